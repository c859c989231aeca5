/* Softmax and log-sum-exp over the middle axis (softmax.h), float32: softmax_impl.h instantiated for one precision.
 * softmax_f64.c is the other; the two translation units compile in parallel. */
#define FC_REAL_DOUBLE 0
#include "attention/softmax_unit.h"
