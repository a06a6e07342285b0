package evchan

// waitList is an intrusive doubly linked list of waiters, shared by the
// three queues of the package: consumers parked in Next (Channel.parked,
// a stack), producers waiting for room (Channel.room, a FIFO) and the
// acquisitions queued on a lock (lockCore.waiters, a FIFO). Each waiter
// embeds a waitLink, so that queueing allocates nothing and a waiter whose
// context ends leaves from the middle in O(1).
//
// A waitList does no locking. The struct that holds it guards it, and the
// links of the waiters on it, with one mutex, and says which with a
// checklocks annotation on the list field; the Locked methods that touch a
// list carry the matching +checklocks annotation. The zero value is an
// empty list.
type waitList[T any] struct {
	head, tail *waitLink[T]
}

// waitLink is the part of a waiter that a waitList threads through. It is
// guarded by the lock of the list the waiter is on; off a list, its
// pointers are nil.
type waitLink[T any] struct {
	prev, next *waitLink[T]
	// owner is the waiter that embeds the link, set by push.
	owner *T
}

// front returns the first waiter, or nil if the list is empty.
func (l *waitList[T]) front() *T {
	if l.head == nil {
		return nil
	}
	return l.head.owner
}

// empty reports whether the list holds no waiter.
func (l *waitList[T]) empty() bool { return l.head == nil }

// pushFront puts owner, whose link is k, first.
func (l *waitList[T]) pushFront(owner *T, k *waitLink[T]) {
	k.owner, k.prev, k.next = owner, nil, l.head
	if l.head == nil {
		l.tail = k
	} else {
		l.head.prev = k
	}
	l.head = k
}

// pushBack puts owner, whose link is k, last.
func (l *waitList[T]) pushBack(owner *T, k *waitLink[T]) {
	k.owner, k.prev, k.next = owner, l.tail, nil
	if l.tail == nil {
		l.head = k
	} else {
		l.tail.next = k
	}
	l.tail = k
}

// remove unlinks k, which must be on l.
func (l *waitList[T]) remove(k *waitLink[T]) {
	if k.prev == nil {
		l.head = k.next
	} else {
		k.prev.next = k.next
	}
	if k.next == nil {
		l.tail = k.prev
	} else {
		k.next.prev = k.prev
	}
	k.prev, k.next, k.owner = nil, nil, nil
}
