/* queue.c - a mutex-protected FIFO with an eventfd wake-up. */
#include "queue.h"

#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int queue_init(queue *q)
{
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0)
        return -1;
    pthread_mutex_init(&q->lock, NULL);
    q->head = NULL;
    q->tail = &q->head;
    return 0;
}

void queue_destroy(queue *q)
{
    close(q->efd);
    pthread_mutex_destroy(&q->lock);
}

void queue_push(queue *q, queue_item *it)
{
    uint64_t one = 1;
    it->next = NULL;
    pthread_mutex_lock(&q->lock);
    *q->tail = it;
    q->tail = &it->next;
    pthread_mutex_unlock(&q->lock);
    ssize_t w = write(q->efd, &one, sizeof one);
    (void)w; /* EAGAIN only when the counter is saturated: already awake */
}

queue_item *queue_take(queue *q)
{
    uint64_t v;
    ssize_t r = read(q->efd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&q->lock);
    queue_item *h = q->head;
    q->head = NULL;
    q->tail = &q->head;
    pthread_mutex_unlock(&q->lock);
    return h;
}

int queue_fd(const queue *q) { return q->efd; }
