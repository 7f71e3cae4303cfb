/* Command-line options for the example and bench programs: a table of
 * options, parsed with checked conversions, and a generated --help. */
#ifndef MN_CLI_H
#define MN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CLI_INT, CLI_FLOAT, CLI_STRING, CLI_FLAG } cli_kind;

typedef struct {
    const char *name;  /* "--steps" */
    cli_kind kind;
    void *target;      /* long *, double *, const char **, bool * */
    const char *help;  /* one line; the default is printed from *target */
    double min, max;   /* accepted range for numbers (both 0: any) */
    bool given;        /* set by cli_parse when the command line has it */
} cli_opt;

/* Applies --threads: more threads than cores only slows the work down (and a slip such as 1000
 * stalls it), so a count above the cores is capped to them with a warning; 0 keeps OpenMP's default
 * (all cores). Returns the count in effect. */
int cli_threads(const char *prog, long requested);
/* The cap alone (with the warning), for lists of counts that a benchmark runs in turn. */
int cli_cap_threads(const char *prog, long requested);

/* A program's exit: status, or 1 with a message when stdout could not be written (a full disk, a
 * closed pipe), so that lost output never exits 0. */
int cli_exit(const char *prog, int status);

/* The options filled in at the start of a table of cap (the rest zeroed), so that
 * tables need no hand-kept count. */
int cli_count(const cli_opt *opts, int cap);

typedef struct {
    const char *prog;        /* program name for messages */
    const char *usage;       /* "[options] IMAGE..." */
    const char *description; /* a paragraph shown by --help */
    cli_opt *opts;
    int n_opts;
} cli_spec;

/* True if the command line gave option name (after cli_parse). */
bool cli_given(const cli_spec *s, const char *name);

/* Parses argv. Positional arguments are collected in order into positional
 * (at most max_positional; the count goes to *n_positional; pass NULL/0 to
 * refuse them). Returns 0 to continue, 1 after printing --help (exit 0),
 * 2 after printing an error naming the option (exit 2). */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **positional, int max_positional,
              int *n_positional);
void cli_usage(const cli_spec *spec, FILE *f);

#endif
