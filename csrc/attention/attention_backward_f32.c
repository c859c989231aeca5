/* Tiled attention backward (attention.h), float32.
 * attention_backward_f64.c is the other precision. */
#define FC_REAL_DOUBLE 0
#include "attention/attention_unit.h"
#include "attention/backward.h"
