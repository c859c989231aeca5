/* Tiled softmax attention (see attention.h), one source for float32 and float64. */
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "fc_parallel.h"

/* The 32-byte vector helpers of attention_impl.h are always inlined: no ABI is crossed. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define FC_REAL_DOUBLE 0
#include "fc_real.h"
#include "attention_impl.h"

#undef FC_REAL_DOUBLE
#define FC_REAL_DOUBLE 1
#include "fc_real.h"
#include "attention_impl.h"
