/* queue.h - a mutex-protected FIFO with an eventfd that wakes its consumer.
 *
 * Items embed a queue_item as their first member. Any thread may push; one
 * consumer takes the whole list at once and polls queue_fd() for wake-ups. */
#ifndef MBGATE_QUEUE_H
#define MBGATE_QUEUE_H

#include <pthread.h>

typedef struct queue_item {
    struct queue_item *next;
    int kind; /* what the item is, for the consumer */
} queue_item;

typedef struct {
    pthread_mutex_t lock;
    queue_item *head, **tail;
    int efd;
} queue;

int queue_init(queue *q);     /* 0, or -1 with errno */
void queue_destroy(queue *q); /* items left are the caller's to free first */
void queue_push(queue *q, queue_item *it);
/* Take every queued item in FIFO order (NULL when empty) and clear the wake-up. */
queue_item *queue_take(queue *q);
int queue_fd(const queue *q);

#endif
