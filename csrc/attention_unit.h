/* What attention_f32.c and attention_f64.c share: the headers around one instantiation of
 * attention_impl.h (FC_REAL_DOUBLE is defined by the including .c file). */
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "fc_parallel.h"
#include "fc_simd.h"

/* The 32-byte vector helpers of attention_impl.h are always inlined: no ABI is crossed. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#include "fc_real.h"
#include "attention_impl.h"
