/* Tiled softmax attention (see attention.h), float64: attention_impl.h instantiated for
 * one precision.  attention_f32.c is the other; two translation units compile in parallel. */
#define FC_REAL_DOUBLE 1
#include "attention_unit.h"
