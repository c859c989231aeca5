/* What softmax_f32.c and softmax_f64.c share: the headers and helpers around one instantiation of
 * softmax_impl.h (FC_REAL_DOUBLE is defined by the including .c file). */
#include "attention/softmax_internal.h"
#include "core/fc_parallel.h"

#include "core/fc_real.h"
#include "attention/softmax_impl.h"
