/* Tiled attention backward (attention.h), float64.
 * attention_backward_f32.c is the other precision. */
#define FC_REAL_DOUBLE 1
#include "attention/attention_unit.h"
#include "attention/backward.h"
