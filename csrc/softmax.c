#include "softmax.h"
#include "fc_parallel.h"

#define FC_REAL_DOUBLE 0
#include "fc_real.h"
#include "softmax_impl.h"

#undef FC_REAL_DOUBLE
#define FC_REAL_DOUBLE 1
#include "fc_real.h"
#include "softmax_impl.h"
