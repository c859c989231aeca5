/* Tiled softmax attention (see attention.h), float32: attention_impl.h instantiated for
 * one precision.  attention_f64.c is the other; two translation units compile in parallel. */
#define FC_REAL_DOUBLE 0
#include "attention_unit.h"
