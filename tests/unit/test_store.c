/* Unit tests: the SQLite outbox file (ids, range deletes, drops, reopen). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"

typedef struct {
    char dir[64];
    store *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/mbgate-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->st = store_open(f->dir, false, err, sizeof err);
    if (!f->st)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    store_close(f->st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* n samples of one tag, values 0..n-1 */
static void put(store *st, int n, int64_t ts)
{
    sample *head = NULL, **tail = &head;
    for (int i = 0; i < n; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        *tail = sample_new("plc1", "t", ts + i, true, 1, v, NULL);
        assert_non_null(*tail);
        tail = &(*tail)->next;
    }
    assert_int_equal(store_put(st, head), 0);
    sample_free_list(head);
}

/* ids still stored, ascending, into out; returns how many */
static int ids_left(store *st, int64_t *out, int max)
{
    int n = 0;
    sample *list = store_read(st, 0, INT64_MAX, max), *s;
    for (s = list; s; s = s->next)
        out[n++] = s->id;
    sample_free_list(list);
    return n;
}

static void test_ids_grow_and_read_order(void **state)
{
    fixture *f = *state;
    int64_t first = store_next_id(f->st);
    put(f->st, 5, 1000);
    assert_int_equal(store_next_id(f->st), first + 5);
    sample *list = store_read(f->st, first, first + 4, 10);
    int n = 0;
    for (sample *s = list; s; s = s->next, n++) {
        assert_int_equal(s->id, first + 1 + n);
        assert_int_equal(s->ts, 1001 + n);
        assert_string_equal(s->dev, "plc1");
        assert_true(s->good);
    }
    assert_int_equal(n, 3);
    sample_free_list(list);
}

static void test_delete_runs_gaps_and_disorder(void **state)
{
    fixture *f = *state;
    int64_t b = store_next_id(f->st);
    put(f->st, 20, 1000);
    /* acks out of order: runs b..b+3, b+5, b+7..b+9, a duplicate, and the last */
    int64_t del[] = { b + 9, b + 1, b + 5, b + 0, b + 8, b + 3, b + 2, b + 7, b + 19, b + 8 };
    assert_int_equal(store_delete(f->st, del, sizeof del / sizeof *del), 0);
    int64_t left[32];
    int n = ids_left(f->st, left, 32);
    int64_t want[] = { 4, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18 };
    assert_int_equal(n, (int)(sizeof want / sizeof *want));
    for (int i = 0; i < n; i++)
        assert_int_equal(left[i], b + want[i]);
    int64_t rows, oldest, used, file;
    store_stats(f->st, &rows, &oldest, &used, &file);
    assert_int_equal(rows, n);
    assert_int_equal(oldest, 1004);
    assert_true(used > 0 && file > 0);
    /* deleting what is gone, or nothing, is not an error */
    assert_int_equal(store_delete(f->st, del, 3), 0);
    assert_int_equal(store_delete(f->st, del, 0), 0);
    store_stats(f->st, &rows, &oldest, &used, &file);
    assert_int_equal(rows, n);
}

static void test_drops_spare_what_is_on_its_way(void **state)
{
    fixture *f = *state;
    int64_t b = store_next_id(f->st);
    put(f->st, 10, 1000);
    /* rows up to b+2 were read by the backlog: not dropped */
    assert_int_equal(store_drop_oldest(f->st, 3, b + 2), 3);
    int64_t left[16];
    assert_int_equal(ids_left(f->st, left, 16), 7);
    assert_int_equal(left[0], b);
    assert_int_equal(left[3], b + 6);
    assert_int_equal(store_drop_before(f->st, 1008, b + 2), 2);
    assert_int_equal(ids_left(f->st, left, 16), 5);
    assert_int_equal(left[4], b + 9);
}

static void test_reopen_keeps_rows_ids_and_counters(void **state)
{
    fixture *f = *state;
    char err[256];
    put(f->st, 4, 1000);
    int64_t next = store_next_id(f->st);
    assert_int_equal(store_set_counter(f->st, "bdseq", 42), 0);
    assert_int_equal(store_counter(f->st, "unset"), 0);
    int64_t del[] = { next - 1 };
    assert_int_equal(store_delete(f->st, del, 1), 0);
    store_close(f->st);
    f->st = store_open(f->dir, true, err, sizeof err);
    assert_non_null(f->st);
    /* new ids follow the stored rows (ids of rows already gone may be reused) */
    assert_int_equal(store_next_id(f->st), next - 1);
    assert_int_equal(store_counter(f->st, "bdseq"), 42);
    int64_t left[8];
    assert_int_equal(ids_left(f->st, left, 8), 3);
    assert_int_equal(left[2], next - 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ids_grow_and_read_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_runs_gaps_and_disorder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drops_spare_what_is_on_its_way, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_rows_ids_and_counters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
