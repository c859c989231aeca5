#include <stdlib.h>
#include "norm.h"
#include "fc_parallel.h"

#define FC_BN_BLOCK 64 /* channels handled together in the (N, C) layout */

#define FC_REAL_DOUBLE 0
#include "fc_real.h"
#include "norm_impl.h"

#undef FC_REAL_DOUBLE
#define FC_REAL_DOUBLE 1
#include "fc_real.h"
#include "norm_impl.h"
