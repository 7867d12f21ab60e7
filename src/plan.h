/* plan.h - the read planner: fewest Modbus read requests for a set of items.
 *
 * Pure logic. The caller groups tags by link, unit id, table and poll
 * interval; the planner merges one group's items (each a run of registers or
 * bits that must be read in one piece) into requests that respect the
 * device's request size cap and max_gap. */
#ifndef MBGATE_PLAN_H
#define MBGATE_PLAN_H

#include <stddef.h>

typedef struct {
    unsigned addr;  /* first register/bit, 0..65535 */
    unsigned count; /* registers/bits, >= 1; never split across requests */
} plan_item;

typedef struct {
    unsigned addr;
    unsigned count;
} plan_req;

/* Plan requests for n items (any order, overlaps allowed). Each request
 * covers whole items only, spans at most max_count registers/bits, and reads
 * through at most max_gap unused addresses between two covered items (a gap
 * is a run of addresses covered by no item). The number of requests is
 * minimal. reqs must have room for n entries; requests come sorted by
 * address. Returns the number of requests, or -1 if an item alone is larger
 * than max_count (or max_count is 0). */
int plan_build(const plan_item *items, size_t n, unsigned max_count,
               unsigned max_gap, plan_req *reqs);

#endif
