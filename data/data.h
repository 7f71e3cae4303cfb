/* mnemo data: datasets, image and text loaders, WordPiece, masking, batching.
 *
 * Everything here that reads the outside world (IDX files, images, text
 * corpora, TSV files, vocabularies) never stops the program on bad input: it
 * returns false or NULL and describes the problem in an mn_err naming the
 * file and the place (byte offset or line) with what was expected and what was
 * found. Programming errors (a class index out of range, max_len too small for
 * [CLS]/[SEP]) stop through mn_fatal, as in the rest of mnemo.
 *
 * Memory: a function that returns a tensor hands out one reference, as in
 * tensor/tensor.h (it belongs to the current scope, if one is open). The
 * structs below (mn_dataset, mn_text_dataset, mn_batcher, mn_wordpiece) own
 * what they hold and are released by their *_free, which also accepts a
 * zeroed struct.
 *
 * Reproducibility: every random choice (shuffles, splits, masking) draws from
 * an explicit mn_rng, so the same seed gives the same data.
 *
 * data depends on tensor/ only. */
#ifndef MN_DATA_H
#define MN_DATA_H

#include "tensor/tensor.h"

/* ---- labelled tensor datasets -------------------------------------------------------------- */
typedef struct {
    mn_tensor *x;       /* [N, ...] samples: F32 (images) or I32 (token ids), one owned reference */
    mn_tensor *y;       /* I32 [N] labels in [0, n_classes), owned */
    int n_classes;
    char **class_names; /* n_classes names, owned */
} mn_dataset;

/* Takes a reference to x ([N, ...]) and y (I32 [N], values in [0, n_classes));
 * copies the names (NULL names the classes "0", "1", ...). */
MN_API void mn_dataset_init(mn_dataset *d, mn_tensor *x, mn_tensor *y, int n_classes, const char *const *class_names);
MN_API int64_t mn_dataset_len(const mn_dataset *d);
MN_API void mn_dataset_free(mn_dataset *d);
/* counts[c] = number of samples of class c (n_classes entries). */
MN_API void mn_dataset_class_counts(const mn_dataset *d, int64_t *counts);
/* Rows index (I32 [M], values in [0, N)) of d, same classes. */
MN_API void mn_dataset_subset(const mn_dataset *d, mn_tensor *index, mn_dataset *out);
/* The samples whose label is one of classes[0..n), relabelled by position:
 * classes {5, 6, 7, 8, 9} become labels 0..4 with those classes' names. Order kept. */
MN_API void mn_dataset_select_classes(const mn_dataset *d, int n, const int *classes, mn_dataset *out);
/* k samples of every class (all of a class with fewer): the first k in dataset
 * order when rng is NULL, else k drawn at random. The result keeps dataset order. */
MN_API void mn_dataset_take_per_class(const mn_dataset *d, int64_t k, mn_rng *rng, mn_dataset *out);
/* Random split with round(test_fraction * N) test samples (per class when
 * stratified, rounding each class separately); both parts keep dataset order. */
MN_API void mn_dataset_split(const mn_dataset *d, double test_fraction, bool stratified, mn_rng *rng, mn_dataset *train,
                      mn_dataset *test);
/* The rows index of x and y: a batch. x -> [B, ...], y -> I32 [B]. */
MN_API void mn_dataset_batch(const mn_dataset *d, mn_tensor *index, mn_tensor **x, mn_tensor **y);

/* ---- shuffling, splitting, batching ----------------------------------------------------------- */
/* Fisher-Yates: for i = n-1 .. 1, swap v[i] with v[mn_rng_below(rng, i + 1)]. */
MN_API void mn_shuffle_i32(mn_rng *rng, int64_t n, int32_t *v);
/* A random permutation of 0..n-1 (I32 [n]): the identity shuffled as above. */
MN_API mn_tensor *mn_randperm(int64_t n, mn_rng *rng);
/* x [N, ...] (F32 or I32), index I32 [B] with values in [0, N) -> [B, ...] (a copy). */
MN_API mn_tensor *mn_gather_rows(mn_tensor *x, mn_tensor *index);
/* Index lists for a seeded train/test split of n samples, both sorted ascending.
 * With labels (n values in [0, n_classes)) the split is stratified: each class
 * contributes round(test_fraction * its count) test samples. */
MN_API void mn_split_indices(int64_t n, const int32_t *labels, int n_classes, double test_fraction, mn_rng *rng,
                      mn_tensor **train, mn_tensor **test);

/* Batches of indices over n samples, epoch after epoch. Epoch e's order is a
 * permutation drawn from the Philox stream (seed, starting block e * 2^40), so
 * it depends only on (seed, e): a run resumed with mn_batcher_seek sees the
 * same batches as one that never stopped. */
typedef struct {
    int64_t n, batch_size;
    bool shuffle, drop_last;
    uint64_t seed;
    int64_t epoch, next; /* the next batch starts at position next of epoch's order */
    int32_t *order;      /* epoch's order (n entries) */
} mn_batcher;
MN_API void mn_batcher_init(mn_batcher *b, int64_t n, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed);
/* I32 [B] indices of the next batch (the last may be short unless drop_last), or
 * NULL once the epoch is over; the call after a NULL starts the next epoch. */
MN_API mn_tensor *mn_batcher_next(mn_batcher *b);
MN_API int64_t mn_batcher_batches_per_epoch(const mn_batcher *b);
/* Batches already handed out in the current epoch (a short last batch counts
 * as one): save it with b->epoch, resume with mn_batcher_seek. */
MN_API int64_t mn_batcher_position(const mn_batcher *b);
/* Continue after the first `batch` batches of epoch `epoch`. */
MN_API void mn_batcher_seek(mn_batcher *b, int64_t epoch, int64_t batch);
MN_API void mn_batcher_free(mn_batcher *b);

/* ---- IDX files (Fashion-MNIST) ---------------------------------------------------------------
 * LeCun's IDX format of unsigned bytes: a big-endian magic 0x000008DD (DD =
 * number of dimensions), DD big-endian uint32 sizes, then the bytes. Files may
 * be gzip-compressed or plain (detected from the content). The size of the data
 * must match the header exactly; errors name the file and the byte offset (in
 * the decompressed stream for gzip files). */
MN_API mn_tensor *mn_idx_read_images(const char *path, mn_err *err); /* magic 0x803 -> [N, 1, H, W] F32 in [0, 1] */
MN_API mn_tensor *mn_idx_read_labels(const char *path, mn_err *err); /* magic 0x801 -> I32 [N] */

#define MN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* Mean and standard deviation of the training pixels (after scaling to [0, 1]). */
#define MN_FASHION_MNIST_MEAN 0.28604f
#define MN_FASHION_MNIST_STD 0.35302f
/* "T-shirt/top", "Trouser", ..., "Ankle boot" for labels 0..9; NULL otherwise. */
MN_API const char *mn_fashion_mnist_class_name(int label);
/* Loads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from dir (NULL: the
 * Debian location above): x [N, 1, 28, 28] in [0, 1], or standardised with the
 * mean/std above when normalize; y I32 [N]; the 10 class names. */
MN_API bool mn_fashion_mnist_load(const char *dir, bool train, bool normalize, mn_dataset *out, mn_err *err);

/* ---- images -------------------------------------------------------------------------------------
 * PNG, JPEG and BMP through stb_image. Pixels become floats in [0, 1], then
 * (optionally) are resized and standardised per channel. Files are checked
 * before decoding: at most 2^27 pixels, no more pixels than the file's bytes
 * can encode (2048 per byte), and JPEG Huffman tables that would overflow
 * stb_image 2.27's decoder are refused. */
/* What loading did to images to fit the options, for a program to tell its user. */
typedef struct {
    int64_t images, resized, converted; /* converted: grey to RGB, colour to grey, or an alpha channel dropped */
    int first_height, first_width, first_channels; /* the first changed image as stored (channels incl. alpha) */
    char first[256];                               /* and its name */
} mn_image_changes;

typedef struct {
    int height, width;       /* output size; 0, 0 keeps the stored size */
    int channels;            /* 1 (grayscale) or 3 (RGB); 0 means 3 */
    const float *mean, *std; /* per channel: x = (x - mean) / std; NULL leaves [0, 1] */
    mn_image_changes *changes; /* optional: counts added to (not thread-safe: one loader at a time) */
} mn_image_opts;

/* One image -> [C, H, W]. Grey images are replicated to RGB and colour images
 * reduced to grey with stb_image's weights (77 R + 150 G + 29 B) / 256; alpha
 * is dropped. Errors name the file and stb_image's reason. */
MN_API mn_tensor *mn_image_load(const char *path, const mn_image_opts *opts, mn_err *err);
/* The same from an encoded image in memory; name is used in messages. */
MN_API mn_tensor *mn_image_decode(const void *data, size_t size, const char *name, const mn_image_opts *opts, mn_err *err);
/* root/CLASS/FILE with FILE ending in .png, .jpg, .jpeg or .bmp (any case):
 * classes are the sub-folders sorted by name (byte order), files are sorted by
 * name within a class, other files and hidden entries are skipped. Without a
 * resize, every image must have the first image's size. x [N, C, H, W], y I32
 * [N], class names = folder names. A class folder without images is an error. */
MN_API bool mn_image_folder_load(const char *root, const mn_image_opts *opts, mn_dataset *out, mn_err *err);
/* Bilinear resize of the last two dims of a F32 [..., H, W] -> [..., height, width].
 * Pixel centres are aligned (PyTorch's align_corners=False); when shrinking, the
 * triangle filter is widened by the scale factor, as PIL's BILINEAR does, so the
 * result is antialiased. Enlarging is plain bilinear interpolation with the
 * border pixels repeated. */
MN_API mn_tensor *mn_image_resize(mn_tensor *x, int64_t height, int64_t width);
/* x [C, H, W] or [N, C, H, W], contiguous F32, in place: x[c] = (x[c] - mean[c]) / std[c]. */
MN_API void mn_image_normalize_(mn_tensor *x, const float *mean, const float *std);

/* ---- text corpora ---------------------------------------------------------------------------- */
typedef struct {
    int64_t n;
    char **texts;       /* n NUL-terminated strings, owned */
    int32_t *labels;    /* n labels in [0, n_classes), owned */
    int n_classes;
    char **class_names; /* owned */
} mn_text_dataset;
MN_API void mn_text_dataset_free(mn_text_dataset *d);
/* Rows index (I32 [M], values in [0, n)) of d, same classes. */
MN_API void mn_text_dataset_subset(const mn_text_dataset *d, mn_tensor *index, mn_text_dataset *out);
/* As mn_dataset_split. */
MN_API void mn_text_dataset_split(const mn_text_dataset *d, double test_fraction, bool stratified, mn_rng *rng,
                           mn_text_dataset *train, mn_text_dataset *test);

#define MN_FORTUNES_DIR "/usr/share/games/fortunes"
/* The fortune files of dir (NULL: MN_FORTUNES_DIR). Each file is a category;
 * entries are separated by lines holding only "%" (a trailing "\r" is allowed);
 * an entry's text is its lines joined by "\n" without the final newline, and
 * blank entries are skipped. categories: n file names (label = position), or
 * n = 0 for every regular file of dir except hidden ones and the *.dat / *.u8
 * index files (sorted by name). Text is kept as bytes (the files are ASCII or
 * UTF-8; the tokenizer copes with anything). A category without entries is an
 * error. */
MN_API bool mn_fortunes_load(const char *dir, int n, const char *const *categories, mn_text_dataset *out, mn_err *err);

/* TSV: one sample per line, "text<TAB>label", split at the last tab so the
 * text may contain tabs; "\r\n" endings accepted; blank lines skipped; spaces
 * around the label ignored. Labels become ids in order of first appearance
 * (MN_LABELS_FIRST_SEEN) or sorted by name in byte order (MN_LABELS_SORTED).
 * When n_known > 0 the classes are exactly known[0..) in that order (e.g. the
 * training set's class_names, so a test file gets the same ids; order is then
 * ignored) and an unknown label is an error. The file must be UTF-8. Errors name the file and line. */
typedef enum { MN_LABELS_FIRST_SEEN, MN_LABELS_SORTED } mn_label_order;
/* A plain-text corpus: one document per line ("\r\n" accepted, blank lines skipped), UTF-8; all of
 * class 0, named after the file. Errors (NUL, invalid UTF-8, no text) name the file and line. */
MN_API bool mn_lines_load(const char *path, mn_text_dataset *out, mn_err *err);
MN_API bool mn_tsv_load(const char *path, mn_label_order order, int n_known, const char *const *known,
                 mn_text_dataset *out, mn_err *err);

/* ---- WordPiece (BERT's tokenizer) --------------------------------------------------------------
 * Matches Hugging Face's BertTokenizer (BasicTokenizer + WordpieceTokenizer):
 *  1. the special tokens [PAD] [UNK] [CLS] [SEP] [MASK] found verbatim in the
 *     text are split out first and never changed;
 *  2. cleaning: NUL, U+FFFD and control characters (Cc, Cf) are dropped, every
 *     whitespace character becomes a space; invalid UTF-8 bytes count as U+FFFD;
 *  3. CJK ideographs (BERT's ranges) become words of their own; base letter +
 *     combining mark pairs are composed (NFC);
 *  4. words split at whitespace; optionally lower-cased and accent-stripped
 *     (canonical decomposition, then non-spacing marks dropped);
 *  5. punctuation (ASCII 33-47, 58-64, 91-96, 123-126, Unicode P*) splits off;
 *  6. each word is matched greedily, longest prefix first, continuation pieces
 *     prefixed "##"; a word that cannot be matched, or that is longer than
 *     max_input_chars_per_word characters, becomes [UNK].
 * Unicode coverage of case, accents and punctuation is listed in data/unicode.h
 * (Latin, Greek, Cyrillic and the common punctuation blocks). */
typedef struct {
    bool lowercase;     /* true for uncased BERT vocabularies */
    int strip_accents;  /* 0: when lowercase (Hugging Face's None), 1: always, -1: never */
    bool no_cjk_split;  /* true to keep CJK ideographs inside words (tokenize_chinese_chars=False) */
    int max_word_chars; /* max_input_chars_per_word; 0 means 100 */
} mn_wordpiece_opts;
/* The options of bert-base-uncased (used when opts is NULL). */
MN_API mn_wordpiece_opts mn_wordpiece_uncased(void);

/* True if s[0..n) is valid UTF-8 (no overlong form, surrogate or truncated sequence); else *bad is
 * the offset of the first bad byte. Text read from files and stdin is checked with it. */
MN_API bool mn_utf8_valid(const char *s, size_t n, size_t *bad);

typedef struct mn_wordpiece mn_wordpiece;
/* vocab.txt: one token per line, id = line number - 1. The file must be UTF-8
 * with no empty line (except at the end), no duplicate and all five special
 * tokens; errors give the line. */
MN_API mn_wordpiece *mn_wordpiece_load(const char *vocab_path, const mn_wordpiece_opts *opts, mn_err *err);
MN_API mn_wordpiece *mn_wordpiece_from_memory(const char *data, size_t size, const char *name, const mn_wordpiece_opts *opts,
                                       mn_err *err);
MN_API void mn_wordpiece_free(mn_wordpiece *t);
MN_API int32_t mn_wordpiece_vocab_size(const mn_wordpiece *t);
MN_API int32_t mn_wordpiece_id(const mn_wordpiece *t, const char *token); /* -1 if absent */
MN_API const char *mn_wordpiece_token(const mn_wordpiece *t, int32_t id); /* NULL if out of range */
MN_API bool mn_wordpiece_is_special(const mn_wordpiece *t, int32_t id);   /* one of the five special tokens */
/* Token ids of text (no [CLS]/[SEP]); malloc'd, *n set to the count; free() it. */
MN_API int32_t *mn_wordpiece_tokenize(const mn_wordpiece *t, const char *text, int64_t *n);
/* Tokens joined by spaces with "##" continuations glued to the previous token
 * (Hugging Face's convert_tokens_to_string, without clean_up_tokenization_spaces);
 * special tokens left out when skip_special. malloc'd; ids must be in range. */
MN_API char *mn_wordpiece_decode(const mn_wordpiece *t, const int32_t *ids, int64_t n, bool skip_special);

/* One text, or a pair when b != NULL, as BERT's input of exactly max_len:
 * [CLS] a [SEP] (b [SEP]) then [PAD]s. Too long inputs are truncated as Hugging
 * Face's "longest_first": one token at a time from the end of the longer text
 * (the second one when equal). token_type_ids: 0 up to and including the first
 * [SEP], 1 for b and its [SEP], 0 on padding; attention_mask: 1 on tokens, 0 on
 * padding. Returns the number of non-padding positions. max_len >= 3 (2 for a
 * single text). */
MN_API int64_t mn_wordpiece_encode(const mn_wordpiece *t, const char *a, const char *b, int64_t max_len, int32_t *input_ids,
                            int32_t *token_type_ids, int32_t *attention_mask);
typedef struct {
    mn_tensor *input_ids;      /* I32 [B, T] */
    mn_tensor *token_type_ids; /* I32 [B, T] */
    mn_tensor *attention_mask; /* I32 [B, T]: 1 = token, 0 = padding */
} mn_encoding;
/* n texts (pairs when b != NULL) as [n, max_len] tensors; they are handed out
 * like op results (in the current scope, if any). */
MN_API mn_encoding mn_wordpiece_encode_batch(const mn_wordpiece *t, int64_t n, const char *const *a, const char *const *b,
                                      int64_t max_len);

/* A BERT-style vocab.txt from a corpus, written atomically: [PAD] [UNK] [CLS]
 * [SEP] [MASK] (ids 0-4), then every character seen (as "c" where a word starts
 * with it, as "##c" where it continues a word, so the corpus never needs
 * [UNK]), then pieces up to vocab_size entries in all: word prefixes "ab..."
 * (whole words included) and word suffixes "##...", of 2..max_piece_chars
 * characters, scored by (occurrences x (characters - 1)), the characters a piece
 * saves over spelling it out, highest first (ties by byte order). Pieces seen
 * fewer than min_count times are not added. Words are the BasicTokenizer's
 * under tok_opts (NULL: uncased); words longer than max_word_chars are ignored.
 * If the characters alone exceed vocab_size the vocabulary is larger than asked. */
typedef struct {
    int32_t vocab_size;  /* target entries, specials and characters included */
    int max_piece_chars; /* longest piece considered; 0 means 16 */
    int64_t min_count;   /* 0 means 2 */
} mn_vocab_build_opts;
MN_API bool mn_wordpiece_build_vocab(int64_t n, const char *const *texts, const mn_wordpiece_opts *tok_opts,
                              const mn_vocab_build_opts *opts, const char *path, mn_err *err);

/* ---- masked language modelling --------------------------------------------------------------
 * BERT's corruption of input_ids (I32 [B, T]): in every row, round(prob x the
 * number of candidate tokens) positions (at least one when there are candidates)
 * are chosen uniformly among the candidates, tokens that are not special ([PAD]
 * [UNK] [CLS] [SEP] [MASK]). Each chosen token becomes [MASK] with probability
 * 0.8, a random non-special token with probability 0.1, or stays (0.1).
 * Returns the corrupted ids (I32 [B, T]); *labels (I32 [B, T]) holds the
 * original id at chosen positions and -100 elsewhere. */
MN_API mn_tensor *mn_mlm_mask(const mn_wordpiece *t, mn_tensor *input_ids, float prob, mn_rng *rng, mn_tensor **labels);

#endif
