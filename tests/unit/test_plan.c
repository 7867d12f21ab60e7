/* test_plan.c - unit tests for the read planner (src/plan.c).
 *
 * Minimality is proven against references written independently of the
 * planner: an exhaustive optimum over every partition of items into requests
 * (n <= 8), and an O(n^2) DP for large maps. Every plan is also checked for
 * validity under the strictest reading of "gap" (only the items lying in the
 * request count as covering), and for small n that it can be realised as a
 * partition of the items. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

#define SPACE 65536u

/* ---- deterministic PRNG (libc rand() differs between platforms) ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t s) { rng_state = s ? s : 0x9E3779B97F4A7C15ull; }

static uint32_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

/* uniform in [lo, hi] */
static unsigned rng_range(unsigned lo, unsigned hi)
{
    return lo + rng_next() % (hi - lo + 1);
}

/* ---- helpers ---- */

static int item_in(const plan_item *it, unsigned a, unsigned c)
{
    return it->addr >= a && it->addr + it->count <= a + c;
}

static void dump_case(const char *why, const plan_item *items, size_t n,
                      unsigned max_count, unsigned max_gap,
                      const plan_req *reqs, int r)
{
    print_error("%s\nmax_count=%u max_gap=%u n=%zu items:", why, max_count,
                max_gap, n);
    for (size_t i = 0; i < n && i < 64; i++)
        print_error(" [%u,+%u)", items[i].addr, items[i].count);
    print_error("\nplan (%d):", r);
    for (int k = 0; k < r && k < 64; k++)
        print_error(" [%u,+%u)", reqs[k].addr, reqs[k].count);
    print_error("\n");
}

/* Longest run of zero bytes in cov[0..len), or len+1 if cov[0] or
 * cov[len-1] is zero (a request must start and end on covered addresses). */
static unsigned longest_hole(const unsigned char *cov, unsigned len)
{
    if (len == 0 || !cov[0] || !cov[len - 1])
        return len + 1;
    unsigned best = 0, run = 0;
    for (unsigned i = 0; i < len; i++) {
        run = cov[i] ? 0 : run + 1;
        if (run > best)
            best = run;
    }
    return best;
}

static unsigned char scratch_cov[SPACE];

/* Validity of a plan, strict reading: inside each request the addresses not
 * covered by an item wholly inside that request form runs <= max_gap, the
 * request starts and ends on such items' addresses, spans <= max_count;
 * requests strictly sorted; each item inside at least one request. Returns
 * NULL or what is wrong. */
static const char *plan_problem(const plan_item *items, size_t n,
                                unsigned max_count, unsigned max_gap,
                                const plan_req *reqs, int r)
{
    if (r < 0)
        return "unexpected -1";
    if ((size_t)r > n || (n > 0 && r == 0))
        return "bad request count";
    for (int k = 0; k < r; k++) {
        unsigned a = reqs[k].addr, c = reqs[k].count;
        if (c == 0 || c > max_count)
            return "request empty or over max_count";
        if (a >= SPACE || c > SPACE - a)
            return "request outside the address space";
        if (k > 0 && a <= reqs[k - 1].addr)
            return "requests not strictly sorted";
        memset(scratch_cov, 0, c);
        for (size_t i = 0; i < n; i++)
            if (item_in(&items[i], a, c))
                memset(scratch_cov + (items[i].addr - a), 1, items[i].count);
        if (longest_hole(scratch_cov, c) > max_gap)
            return "request reads an unbridged gap or past its items";
    }
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (int k = 0; k < r && !found; k++)
            found = item_in(&items[i], reqs[k].addr, reqs[k].count);
        if (!found)
            return "item not wholly inside any request";
    }
    return NULL;
}

/* Feasibility of a set of items as one request, by its own items only:
 * union hull <= max_count, every internal uncovered run <= max_gap. */
static int group_ok(const plan_item *items, size_t n, unsigned mask,
                    unsigned max_count, unsigned max_gap,
                    unsigned *lo_out, unsigned *hi_out)
{
    unsigned lo = SPACE, hi = 0;
    for (size_t i = 0; i < n; i++)
        if (mask & (1u << i)) {
            if (items[i].addr < lo)
                lo = items[i].addr;
            if (items[i].addr + items[i].count > hi)
                hi = items[i].addr + items[i].count;
        }
    if (lo_out)
        *lo_out = lo;
    if (hi_out)
        *hi_out = hi;
    if (hi <= lo || hi - lo > max_count)
        return 0;
    unsigned char cov[64] = {0};
    if (hi - lo > sizeof cov)
        return 0; /* callers keep spans small */
    for (size_t i = 0; i < n; i++)
        if (mask & (1u << i))
            memset(cov + (items[i].addr - lo), 1, items[i].count);
    return longest_hole(cov, hi - lo) <= max_gap;
}

/* Exhaustive optimum over every assignment of items to requests (every set
 * partition), via a DP over subsets: best[m] = min over feasible blocks b
 * of m holding m's lowest item of 1 + best[m \ b]. -1 if none exists. */
#define BF_MAX 8
static int brute_opt(const plan_item *items, size_t n, unsigned max_count,
                     unsigned max_gap)
{
    unsigned full = (1u << n) - 1;
    unsigned char ok[1u << BF_MAX];
    int best[1u << BF_MAX];
    for (unsigned m = 1; m <= full; m++)
        ok[m] = (unsigned char)group_ok(items, n, m, max_count, max_gap,
                                        NULL, NULL);
    best[0] = 0;
    for (unsigned m = 1; m <= full; m++) {
        unsigned low = m & -m, rest = m ^ low;
        best[m] = -1;
        /* every subset of m that contains low */
        for (unsigned s = rest;; s = (s - 1) & rest) {
            unsigned b = s | low;
            if (ok[b] && best[m ^ b] >= 0 &&
                (best[m] < 0 || best[m ^ b] + 1 < best[m]))
                best[m] = best[m ^ b] + 1;
            if (s == 0)
                break;
        }
    }
    return best[full];
}

/* The plan can be realised as a partition: each item given to one request
 * containing it so that every request's own items have exactly that hull
 * and leave no gap > max_gap. Backtracking; n <= BF_MAX. */
static int realise(const plan_item *items, size_t n, unsigned max_count,
                   unsigned max_gap, const plan_req *reqs, int r,
                   size_t i, unsigned *masks)
{
    if (i == n) {
        for (int k = 0; k < r; k++) {
            unsigned lo, hi;
            if (!group_ok(items, n, masks[k], max_count, max_gap, &lo, &hi) ||
                lo != reqs[k].addr || hi != reqs[k].addr + reqs[k].count)
                return 0;
        }
        return 1;
    }
    for (int k = 0; k < r; k++) {
        if (!item_in(&items[i], reqs[k].addr, reqs[k].count))
            continue;
        masks[k] |= 1u << i;
        int ok = realise(items, n, max_count, max_gap, reqs, r, i + 1, masks);
        masks[k] &= ~(1u << i);
        if (ok)
            return 1;
    }
    return 0;
}

/* O(n^2) reference DP, built from the problem's definition rather than the
 * planner's code: keep items no other item contains (ties by index), sort
 * them, and split them into contiguous runs whose hull spans <= max_count
 * and contains no run of globally uncovered addresses > max_gap (read off
 * a coverage bitmap of all items). */
static int cmp_item(const void *a, const void *b)
{
    const plan_item *x = a, *y = b;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    return (x->count > y->count) - (x->count < y->count);
}

static unsigned char dp_cov[SPACE];

static int dp_opt(const plan_item *items, size_t n, unsigned max_count,
                  unsigned max_gap)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].count > max_count)
            return -1;
    plan_item *m = malloc((n + 1) * sizeof *m);
    int *dp = malloc((n + 1) * sizeof *dp);
    assert_non_null(m);
    assert_non_null(dp);
    size_t k = 0;
    memset(dp_cov, 0, sizeof dp_cov);
    for (size_t i = 0; i < n; i++) {
        memset(dp_cov + items[i].addr, 1, items[i].count);
        int inside = 0;
        for (size_t j = 0; j < n && !inside; j++) {
            if (j == i || !item_in(&items[i], items[j].addr, items[j].count))
                continue;
            int same = items[i].addr == items[j].addr &&
                       items[i].count == items[j].count;
            inside = !same || j < i;
        }
        if (!inside)
            m[k++] = items[i];
    }
    qsort(m, k, sizeof *m, cmp_item);
    dp[0] = 0;
    for (size_t j = 0; j < k; j++) {
        unsigned end = m[j].addr + m[j].count;
        dp[j + 1] = -1;
        /* Grow the run leftwards, scanning only the newly added addresses:
         * cur = uncovered run at the left edge, hole = longest inside. */
        unsigned left = end, hole = 0, cur = 0;
        for (size_t i = j + 1; i-- > 0;) {
            if (end - m[i].addr > max_count)
                break;
            while (left > m[i].addr) {
                left--;
                cur = dp_cov[left] ? 0 : cur + 1;
                if (cur > hole)
                    hole = cur;
            }
            if (hole > max_gap)
                break; /* extending left keeps this hole */
            if (dp[i] >= 0 && (dp[j + 1] < 0 || dp[i] + 1 < dp[j + 1]))
                dp[j + 1] = dp[i] + 1;
        }
    }
    int res = dp[k];
    free(m);
    free(dp);
    return res;
}

/* Runs the planner with an exactly sized, freshly allocated output (so ASan
 * sees any overrun) and checks the input was not modified. */
static int run_plan(const plan_item *items, size_t n, unsigned max_count,
                    unsigned max_gap, plan_req **out)
{
    plan_req *reqs = n ? malloc(n * sizeof *reqs) : NULL;
    plan_item *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (n) {
        assert_non_null(reqs);
        assert_non_null(copy);
        memcpy(copy, items, n * sizeof *copy);
    }
    int r = plan_build(items, n, max_count, max_gap, reqs);
    if (n)
        assert_memory_equal(copy, items, n * sizeof *copy);
    free(copy);
    *out = reqs;
    return r;
}

static void expect_valid(const plan_item *items, size_t n, unsigned max_count,
                         unsigned max_gap, const plan_req *reqs, int r)
{
    const char *why = plan_problem(items, n, max_count, max_gap, reqs, r);
    if (why) {
        dump_case(why, items, n, max_count, max_gap, reqs, r);
        fail();
    }
}

/* Plans one case and compares it with the expected requests. */
static void expect_plan(const plan_item *items, size_t n, unsigned max_count,
                        unsigned max_gap, const plan_req *want, int nwant)
{
    plan_req *reqs;
    int r = run_plan(items, n, max_count, max_gap, &reqs);
    assert_int_equal(r, nwant);
    for (int k = 0; k < r; k++) {
        assert_int_equal(reqs[k].addr, want[k].addr);
        assert_int_equal(reqs[k].count, want[k].count);
    }
    if (r >= 0)
        expect_valid(items, n, max_count, max_gap, reqs, r);
    free(reqs);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- hand cases ---- */

static void test_empty(void **state)
{
    (void)state;
    plan_req r[1];
    plan_item it[1] = {{0, 1}};
    assert_int_equal(plan_build(NULL, 0, 125, 0, NULL), 0);
    assert_int_equal(plan_build(it, 0, 125, 16, r), 0);
}

static void test_bad_args(void **state)
{
    (void)state;
    plan_req r[2];
    plan_item one[] = {{0, 1}};
    assert_int_equal(plan_build(one, 1, 0, 0, r), -1);        /* max_count 0 */
    assert_int_equal(plan_build(NULL, 0, 0, 0, NULL), -1);
    plan_item big[] = {{10, 126}};
    assert_int_equal(plan_build(big, 1, 125, 16, r), -1);     /* > max_count */
    plan_item big2[] = {{0, 1}, {10, 9}};
    assert_int_equal(plan_build(big2, 2, 8, 100, r), -1);     /* one of two */
    plan_item zero[] = {{10, 0}};
    assert_int_equal(plan_build(zero, 1, 125, 0, r), -1);     /* count 0 */
    plan_item past[] = {{65535, 2}};
    assert_int_equal(plan_build(past, 1, 125, 0, r), -1);     /* > 65536 */
    plan_item far[] = {{65536, 1}};
    assert_int_equal(plan_build(far, 1, 125, 0, r), -1);
    plan_item wrap[] = {{0xFFFFFFFFu, 2}};                    /* no wrap */
    assert_int_equal(plan_build(wrap, 1, 0xFFFFFFFFu, 0, r), -1);
    plan_item huge[] = {{1, 0xFFFFFFFFu}};
    assert_int_equal(plan_build(huge, 1, 0xFFFFFFFFu, 0, r), -1);
}

static void test_one_item(void **state)
{
    (void)state;
    plan_item it[] = {{100, 2}};
    plan_req want[] = {{100, 2}};
    expect_plan(it, 1, 125, 16, want, 1);
    expect_plan(it, 1, 2, 0, want, 1); /* exactly max_count */
    plan_item bit[] = {{7, 1}};
    plan_req wbit[] = {{7, 1}};
    expect_plan(bit, 1, 1, 0, wbit, 1);
}

static void test_gap_limit(void **state)
{
    (void)state;
    /* hole 11..14 = 4 addresses */
    plan_item it[] = {{10, 1}, {15, 1}};
    plan_req one[] = {{10, 6}};
    plan_req two[] = {{10, 1}, {15, 1}};
    expect_plan(it, 2, 125, 4, one, 1); /* exactly at the limit */
    expect_plan(it, 2, 125, 3, two, 2); /* one past it */
    expect_plan(it, 2, 5, 4, two, 2);   /* bridged, but span 6 > 5 */
    expect_plan(it, 2, 6, 4, one, 1);   /* span exactly max_count */
}

static void test_gap_zero(void **state)
{
    (void)state;
    plan_item touch[] = {{0, 2}, {2, 2}};
    plan_req w1[] = {{0, 4}};
    expect_plan(touch, 2, 125, 0, w1, 1);
    plan_item apart[] = {{0, 2}, {3, 1}};
    plan_req w2[] = {{0, 2}, {3, 1}};
    expect_plan(apart, 2, 125, 0, w2, 2);
    plan_req w3[] = {{0, 4}};
    expect_plan(apart, 2, 125, 1, w3, 1);
}

static void test_span_limit(void **state)
{
    (void)state;
    plan_item it[] = {{0, 2}, {2, 2}};
    plan_req one[] = {{0, 4}};
    plan_req two[] = {{0, 2}, {2, 2}};
    expect_plan(it, 2, 4, 0, one, 1);
    expect_plan(it, 2, 3, 0, two, 2);
}

static void test_aliases(void **state)
{
    (void)state;
    /* a bool bit tag and a uint16 on one register, a duplicate, and a
     * uint16 aliasing the low word of a float32 */
    plan_item it[] = {{100, 1}, {100, 1}, {100, 1}, {300, 2}, {301, 1}};
    plan_req want[] = {{100, 1}, {300, 2}};
    expect_plan(it, N(it), 125, 16, want, 2);
    plan_req merged[] = {{100, 202}};
    expect_plan(it, N(it), 202, 199, merged, 1);
    expect_plan(it, N(it), 202, 198, want, 2);
    plan_item dup[] = {{5, 4}, {5, 4}};
    plan_req wdup[] = {{5, 4}};
    expect_plan(dup, 2, 4, 0, wdup, 1);
}

static void test_nested(void **state)
{
    (void)state;
    /* The hole after [2,3) is bridged by the long item: distance is measured
     * from the furthest end, not the previous item's. */
    plan_item it[] = {{2, 1}, {0, 10}, {11, 1}};
    plan_req one[] = {{0, 12}};
    expect_plan(it, 3, 12, 1, one, 1);
    plan_req two[] = {{0, 10}, {11, 1}};
    expect_plan(it, 3, 12, 0, two, 2);
    expect_plan(it, 3, 11, 1, two, 2);
}

static void test_straddle(void **state)
{
    (void)state;
    /* P=[0,1) W=[1,6) Q=[2,3), max_count 5, max_gap 0. Grouping P with Q
     * would read address 1, which only W covers and W is not in that
     * request: Q must go with W. */
    plan_item it[] = {{0, 1}, {1, 5}, {2, 1}};
    plan_req want[] = {{0, 1}, {1, 5}};
    expect_plan(it, 3, 5, 0, want, 2);
}

static void test_unsorted(void **state)
{
    (void)state;
    plan_item it[] = {{40, 2}, {0, 1}, {20, 1}, {1, 1}, {42, 1}, {22, 2}};
    plan_req want[] = {{0, 2}, {20, 4}, {40, 3}};
    expect_plan(it, N(it), 125, 1, want, 3);
    plan_req all[] = {{0, 43}};
    expect_plan(it, N(it), 125, 18, all, 1);
}

static void test_top_of_space(void **state)
{
    (void)state;
    plan_item it[] = {{65530, 3}, {65535, 1}};
    plan_req one[] = {{65530, 6}};
    plan_req two[] = {{65530, 3}, {65535, 1}};
    expect_plan(it, 2, 125, 2, one, 1);
    expect_plan(it, 2, 125, 1, two, 2);
    plan_item last[] = {{65534, 2}};
    plan_req wl[] = {{65534, 2}};
    expect_plan(last, 1, 2, 0, wl, 1);
    plan_item whole[] = {{0, 65536}};
    plan_req ww[] = {{0, 65536}};
    expect_plan(whole, 1, 65536, 0, ww, 1);
    /* huge max_gap / max_count must not overflow */
    plan_item ends[] = {{0, 1}, {65535, 1}};
    plan_req we[] = {{0, 65536}};
    expect_plan(ends, 2, 0xFFFFFFFFu, 0xFFFFFFFFu, we, 1);
}

static void test_bits(void **state)
{
    (void)state;
    /* 2000-bit cap: 2100 single coils, contiguous */
    enum { NB = 2100 };
    plan_item *it = malloc(NB * sizeof *it);
    assert_non_null(it);
    for (unsigned i = 0; i < NB; i++)
        it[NB - 1 - i] = (plan_item){i, 1};
    plan_req want[] = {{0, 2000}, {2000, 100}};
    expect_plan(it, NB, 2000, 0, want, 2);
    free(it);
}

/* ---- randomised proofs ---- */

static void shuffle(plan_item *it, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_next() % i;
        plan_item t = it[i - 1];
        it[i - 1] = it[j];
        it[j] = t;
    }
}

/* Thousands of small maps: plan_build's count equals the exhaustive
 * optimum, the plan is valid, realisable as a partition, and independent of
 * input order. */
static void test_random_vs_bruteforce(void **state)
{
    (void)state;
    rng_seed(20240601);
    static const unsigned widths[] = {4, 8, 12, 16, 24, 40};
    unsigned checked = 0, infeasible = 0;
    for (int iter = 0; iter < 30000; iter++) {
        size_t n = rng_range(0, BF_MAX);
        unsigned width = widths[rng_next() % N(widths)];
        unsigned max_count = rng_range(1, 20), max_gap = rng_range(0, 5);
        plan_item items[BF_MAX];
        unsigned maxc = 0;
        for (size_t i = 0; i < n; i++) {
            items[i].addr = rng_range(0, width - 1);
            items[i].count = rng_range(1, 4);
            if (items[i].count > maxc)
                maxc = items[i].count;
        }
        if (rng_next() % 8 == 0)
            for (size_t i = 0; i < n; i++)
                items[i].addr += 65536 - width - 4; /* top of the space */
        plan_req *reqs;
        int r = run_plan(items, n, max_count, max_gap, &reqs);
        int opt = brute_opt(items, n, max_count, max_gap);
        if (maxc > max_count) {
            assert_int_equal(opt, -1);
            if (r != -1) {
                dump_case("expected -1", items, n, max_count, max_gap, reqs, r);
                fail();
            }
            free(reqs);
            infeasible++;
            continue;
        }
        if (r != opt) {
            dump_case("not minimal", items, n, max_count, max_gap, reqs, r);
            print_error("brute-force optimum %d\n", opt);
            fail();
        }
        expect_valid(items, n, max_count, max_gap, reqs, r);
        unsigned masks[BF_MAX] = {0};
        if (!realise(items, n, max_count, max_gap, reqs, r, 0, masks)) {
            dump_case("not a partition", items, n, max_count, max_gap, reqs, r);
            fail();
        }
        plan_req *again;
        shuffle(items, n);
        int r2 = run_plan(items, n, max_count, max_gap, &again);
        assert_int_equal(r2, r);
        if (r > 0)
            assert_memory_equal(again, reqs, (size_t)r * sizeof *reqs);
        free(again);
        free(reqs);
        checked++;
    }
    assert_true(checked > 15000);
    assert_true(infeasible > 1000);
}

/* Medium maps (beyond brute force) against the reference DP. */
static void test_random_vs_dp(void **state)
{
    (void)state;
    rng_seed(777);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = rng_range(9, 150);
        unsigned width = rng_range(8, 600);
        unsigned max_count = rng_range(4, 40), max_gap = rng_range(0, 8);
        plan_item *items = malloc(n * sizeof *items);
        assert_non_null(items);
        for (size_t i = 0; i < n; i++)
            items[i] = (plan_item){rng_range(0, width - 1), rng_range(1, 4)};
        plan_req *reqs;
        int r = run_plan(items, n, max_count, max_gap, &reqs);
        int opt = dp_opt(items, n, max_count, max_gap);
        if (r != opt) {
            dump_case("not minimal vs DP", items, n, max_count, max_gap, reqs,
                      r);
            print_error("DP optimum %d\n", opt);
            fail();
        }
        expect_valid(items, n, max_count, max_gap, reqs, r);
        free(reqs);
        free(items);
    }
}

/* A realistic scattered register map: clusters of tags of mixed widths
 * across the whole address space. */
static plan_item *scattered_map(size_t n, unsigned maxw)
{
    static const unsigned widths[] = {1, 1, 1, 2, 2, 4, 8, 16};
    plan_item *it = malloc(n * sizeof *it);
    assert_non_null(it);
    unsigned base = 0;
    for (size_t i = 0; i < n; i++) {
        if (rng_next() % 25 == 0)
            base = rng_range(0, 65000);
        unsigned w = widths[rng_next() % N(widths)];
        if (w > maxw)
            w = maxw;
        unsigned a = base + rng_range(0, 400);
        if (a + w > SPACE)
            a = SPACE - w;
        it[i] = (plan_item){a, w};
    }
    return it;
}

static void test_large_scattered(void **state)
{
    (void)state;
    rng_seed(4242);
    static const unsigned gaps[] = {0, 1, 4, 16, 50};
    for (size_t g = 0; g < N(gaps); g++) {
        size_t n = 2000;
        plan_item *items = scattered_map(n, 16);
        plan_req *reqs;
        int r = run_plan(items, n, 125, gaps[g], &reqs);
        int opt = dp_opt(items, n, 125, gaps[g]);
        assert_int_equal(r, opt);
        expect_valid(items, n, 125, gaps[g], reqs, r);
        /* input order must not matter */
        plan_req *again;
        shuffle(items, n);
        assert_int_equal(run_plan(items, n, 125, gaps[g], &again), r);
        assert_memory_equal(again, reqs, (size_t)r * sizeof *reqs);
        free(again);
        free(reqs);
        free(items);
    }
}

/* n = 10,000 at the register cap and the bit cap: still optimal. */
static void test_ten_thousand(void **state)
{
    (void)state;
    rng_seed(99);
    size_t n = 10000;
    plan_item *items = scattered_map(n, 16);
    plan_req *reqs;
    int r = run_plan(items, n, 125, 16, &reqs);
    assert_int_equal(r, dp_opt(items, n, 125, 16));
    expect_valid(items, n, 125, 16, reqs, r);
    free(reqs);
    for (size_t i = 0; i < n; i++)
        items[i].count = 1; /* coils */
    r = run_plan(items, n, 2000, 0, &reqs);
    assert_int_equal(r, dp_opt(items, n, 2000, 0));
    expect_valid(items, n, 2000, 0, reqs, r);
    free(reqs);
    free(items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_one_item),
        cmocka_unit_test(test_gap_limit),
        cmocka_unit_test(test_gap_zero),
        cmocka_unit_test(test_span_limit),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_straddle),
        cmocka_unit_test(test_unsorted),
        cmocka_unit_test(test_top_of_space),
        cmocka_unit_test(test_bits),
        cmocka_unit_test(test_random_vs_bruteforce),
        cmocka_unit_test(test_random_vs_dp),
        cmocka_unit_test(test_large_scattered),
        cmocka_unit_test(test_ten_thousand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
