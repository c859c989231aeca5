/* The SIMD layer: the one place that decides how the kernels get vector code.
 *
 * FC_VECTOR_EXT     1: the kernels use GCC/Clang vector extensions (vector_size types and
 *                   their operators, __builtin_convertvector).  GCC, Clang, Apple clang and
 *                   zig cc all have them.
 *                   0: the plain-C backend: every kernel takes its scalar loops instead.  What a
 *                   compiler without vector extensions (MSVC) gets, and what a build with
 *                   FASTCORE_PORTABLE=1 (setup.py: -DFASTCORE_PORTABLE) compiles on GCC or
 *                   Clang, so that CI runs the whole test suite on it.
 * FC_SHUFFLE1(a, vi, ...), FC_SHUFFLE2(a, b, vi, ...)
 *                   a vector with lanes picked from a (or from a then b) by constant indices
 *                   (vi: the integer vector type of that width): GCC's __builtin_shuffle or
 *                   Clang's __builtin_shufflevector.  Only where FC_VECTOR_EXT is 1.
 * FC_MULTIVERSION   put before a hot function (its helpers must be FC_INLINE): GCC >= 12 on
 *                   x86-64 Linux compiles it three times (x86-64-v4 = AVX-512, v3 = AVX2 + FMA,
 *                   baseline) and picks the clone for the CPU at load time.  Elsewhere empty:
 *                   the baseline of the target (SSE2 on x86-64, NEON on aarch64), or what
 *                   -march gives.  FC_MULTIVERSION_CLONES says which (1: the clones).
 * FC_INLINE         static inline, always inlined where the compiler can be told, so that a
 *                   helper called from an FC_MULTIVERSION function is compiled for that clone's
 *                   instruction set (an out-of-line helper is baseline).
 */
#ifndef FC_SIMD_H
#define FC_SIMD_H

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FASTCORE_PORTABLE)
#define FC_VECTOR_EXT 1
#else
#define FC_VECTOR_EXT 0
#endif

#if FC_VECTOR_EXT && defined(__clang__)
/* (sizeof(vi): the same arguments type-check on both compilers) */
#define FC_SHUFFLE1(a, vi, ...) ((void)sizeof(vi), __builtin_shufflevector((a), (a), __VA_ARGS__))
#define FC_SHUFFLE2(a, b, vi, ...) ((void)sizeof(vi), __builtin_shufflevector((a), (b), __VA_ARGS__))
#elif FC_VECTOR_EXT
#define FC_SHUFFLE1(a, vi, ...) __builtin_shuffle((a), (vi){__VA_ARGS__})
#define FC_SHUFFLE2(a, b, vi, ...) __builtin_shuffle((a), (b), (vi){__VA_ARGS__})
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FC_INLINE static inline __attribute__((always_inline))
#else
#define FC_INLINE static inline
#endif

/* Vector helpers take and return vector types by value.  They are FC_INLINE, so no call crosses
 * an ABI boundary and the compilers' notes on the vector calling convention (-Wpsabi: "the ABI
 * for passing parameters with 32-byte alignment has changed") do not apply to this code.  Clang's
 * warning is silenced here; GCC prints its note whatever the pragma says (a note, never an error). */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunknown-warning-option"
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) \
    && defined(__linux__) && !defined(FC_NO_MULTIVERSION) && !defined(__SANITIZE_ADDRESS__) \
    && !defined(FASTCORE_PORTABLE)
#define FC_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FC_MULTIVERSION_CLONES 1
#else
#define FC_MULTIVERSION
#define FC_MULTIVERSION_CLONES 0
#endif

#endif /* FC_SIMD_H */
