/* Tiled attention forward and the input check (attention.h), float32.
 * attention_forward_f64.c is the other precision. */
#define FC_REAL_DOUBLE 0
#include "attention/attention_unit.h"
#include "attention/forward.h"
