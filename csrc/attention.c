/* Tiled softmax attention (see attention.h), one source for float32 and float64. */
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "fc_parallel.h"

#define FC_REAL_DOUBLE 0
#include "fc_real.h"
#include "attention_impl.h"

#undef FC_REAL_DOUBLE
#define FC_REAL_DOUBLE 1
#include "fc_real.h"
#include "attention_impl.h"
