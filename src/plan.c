/* plan.c - the read planner (see plan.h).
 *
 * Algorithm: sort items by (addr asc, end desc); drop every item nested in
 * an earlier one (end <= running max end, duplicates included); the rest,
 * the "maximal" items, then have strictly increasing starts AND ends. Walk
 * them left to right and extend the current request while the next maximal
 * item keeps span <= max_count and its distance from the request's end
 * <= max_gap; else close the request. O(n log n), no allocation: reqs is
 * used as the sort buffer and compacted in place.
 *
 * Why this is optimal (and valid under the strictest reading of "gap"):
 * 1. A request is read as an interval; a gap inside it is an address no item
 *    covers. Fewer items in a request can only shrink its hull, so a gap
 *    counted against all items is never larger than one counted against the
 *    request's own items: every valid plan is valid in this weakest sense,
 *    and OPT is at least the optimum of this relaxed problem.
 * 2. In the relaxed problem an interval [L,R) contains a contiguous run of
 *    maximal items (starts and ends both increase, so i < j < k with i, k
 *    inside forces j inside), and its span and internal gaps bound those of
 *    the run. Any cover by k intervals thus yields k runs covering all
 *    maximal items; trimming overlaps (a sub-run of a feasible run is
 *    feasible) gives a partition into <= k contiguous feasible runs.
 * 3. For contiguous runs with this monotone feasibility, greedy "extend
 *    while feasible" is optimal (standard stays-ahead argument: after each
 *    request greedy has covered at least as long a prefix as any solution).
 * 4. Greedy's plan is valid in the strict sense too: give each nested item
 *    to the request holding its container. Inside a run i..j of maximal
 *    items, an address covered by any item is covered by a maximal item of
 *    the run (one before i ends before i does; one after j starts after j
 *    does), so its own items leave exactly the global gaps, each <= max_gap
 *    since consecutive maximal items bound exactly those gaps.
 * So the greedy count equals the relaxed lower bound: minimal. */
#include "plan.h"

#include <limits.h>
#include <stdlib.h>

#define PLAN_SPACE 65536UL /* Modbus address space, registers or bits */

/* addr ascending, then longer first so a nested duplicate follows its
 * container. */
static int cmp_req(const void *a, const void *b)
{
    const plan_req *x = a, *y = b;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return 0;
}

int plan_build(const plan_item *items, size_t n, unsigned max_count,
               unsigned max_gap, plan_req *reqs)
{
    if (max_count == 0 || n > (size_t)INT_MAX)
        return -1;
    if (n == 0)
        return 0;
    /* Validate everything before touching reqs. */
    for (size_t i = 0; i < n; i++) {
        unsigned long a = items[i].addr, c = items[i].count;
        if (c == 0 || c > max_count || c > PLAN_SPACE || a > PLAN_SPACE - c)
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        reqs[i].addr = items[i].addr;
        reqs[i].count = items[i].count;
    }
    qsort(reqs, n, sizeof *reqs, cmp_req);

    /* Write index w never overtakes read index i: each written request
     * consumed at least one item already read. hi is the running max end. */
    size_t w = 0;
    unsigned long lo = reqs[0].addr, hi = lo + reqs[0].count;
    for (size_t i = 1; i < n; i++) {
        unsigned long a = reqs[i].addr, e = a + reqs[i].count;
        if (e <= hi)
            continue; /* nested in an item of the open request */
        if (e - lo <= max_count && (a <= hi || a - hi <= max_gap)) {
            hi = e;
            continue;
        }
        reqs[w].addr = (unsigned)lo;
        reqs[w].count = (unsigned)(hi - lo);
        w++;
        lo = a;
        hi = e;
    }
    reqs[w].addr = (unsigned)lo;
    reqs[w].count = (unsigned)(hi - lo);
    w++;
    return (int)w;
}
