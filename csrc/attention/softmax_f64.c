/* Softmax and log-sum-exp over the middle axis (softmax.h), float64: softmax_impl.h instantiated for one precision.
 * softmax_f32.c is the other; the two translation units compile in parallel. */
#define FC_REAL_DOUBLE 1
#include "attention/softmax_unit.h"
