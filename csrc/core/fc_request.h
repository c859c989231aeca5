/* What every operation's request struct shares.
 *
 * Each kernel family's header declares one request struct per operation (or one per family
 * when its operations read the same problem) and one extern function per operation that takes
 * it: the element type travels in the request, not in the function name, and options travel
 * as named fields, not as the tenth positional argument.  The family's *_dispatch.c is the only
 * place that looks at `dtype` and `path`; it calls the precision's implementation, whose name
 * is the operation's with _f32 or _f64 appended (written out in the family's *_internal.h).
 */
#ifndef FC_REQUEST_H
#define FC_REQUEST_H

#include "core/fc_status.h"

/* The element type of a request's real arrays (inputs and same-typed outputs). */
typedef enum fc_dtype {
    FC_FLOAT32 = 0,
    FC_FLOAT64 = 1
} fc_dtype;

/* Which implementation answers: the fast kernels, or the family's reference path (plain C, in
 * double, written for reading: the maths of the docs in code), which the tests compare every
 * fast path against.  Families without a reference path reject FC_PATH_REFERENCE. */
typedef enum fc_path {
    FC_PATH_FAST = 0,
    FC_PATH_REFERENCE = 1
} fc_path;

/* fn##_f32(...) or fn##_f64(...) by dtype; FC_BAD_ARGUMENT for any other value. */
#define FC_BY_DTYPE(dtype, fn, ...)                                   \
    ((dtype) == FC_FLOAT32   ? fn##_f32(__VA_ARGS__)                  \
     : (dtype) == FC_FLOAT64 ? fn##_f64(__VA_ARGS__)                  \
                             : (int)FC_BAD_ARGUMENT)

#endif /* FC_REQUEST_H */
