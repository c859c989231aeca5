/* Tiled attention forward and the input check (attention.h), float64.
 * attention_forward_f32.c is the other precision. */
#define FC_REAL_DOUBLE 1
#include "attention/attention_unit.h"
#include "attention/forward.h"
