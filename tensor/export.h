/* MN_API marks the functions and variables of mnemo's public API. The library is compiled with
 * -fvisibility=hidden, so libmnemo.so exports exactly these; everything else (the engine's,
 * kernels' and modules' internals) stays inside it. */
#ifndef MN_TENSOR_EXPORT_H
#define MN_TENSOR_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define MN_API __attribute__((visibility("default")))
#else
#define MN_API
#endif

#endif
