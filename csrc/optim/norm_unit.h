/* What norm_f32.c and norm_f64.c share: the headers and helpers around one instantiation of
 * norm_impl.h (FC_REAL_DOUBLE is defined by the including .c file). */
#include <stdlib.h>
#include "optim/optim_internal.h"
#include "core/fc_parallel.h"

#define FC_BN_BLOCK 64 /* channels handled together in the (N, C) layout */

#include "core/fc_real.h"
#include "optim/norm_impl.h"
