/* What every attention translation unit shares (attention_forward_*.c, attention_backward_*.c,
 * FC_REAL_DOUBLE defined by the including .c file): the headers and the tile blocks of tiles.h. */
#include <stdlib.h>
#include <string.h>

#include "attention/attention_internal.h"
#include "core/fc_parallel.h"
#include "core/fc_simd.h"

#include "core/fc_real.h"
#include "attention/tiles.h"
