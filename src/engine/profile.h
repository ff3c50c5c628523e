/*
 * profile.h - the per-op wall-clock profile of the forward pass: a step is
 * bracketed as
 *     double t = bc__prof_begin(prof);  ...step...  bc__prof_end(prof, BC_PROFILE_OP_X, t);
 * which adds its time to one bc_profile_op of the accumulator prof. prof is
 * NULL when profiling is off: then each is one predictable branch and no
 * clock read. The context owns the accumulator (bc_context_params.profile)
 * and hands it to the pass.
 */
#ifndef BC_PROFILE_H
#define BC_PROFILE_H

#include "base/base.h"

#include <time.h>

static inline double bc__prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double bc__prof_begin(const bc_profile *prof) { return prof ? bc__prof_now() : 0.0; }

static inline void bc__prof_end(bc_profile *prof, bc_profile_op op, double t0) {
    if (prof) prof->op_seconds[op] += bc__prof_now() - t0;
}

#endif /* BC_PROFILE_H */
