package evchan

import (
	"slices"
	"testing"
)

type listItem struct {
	v    int
	link waitLink[listItem]
}

// contents walks l both ways and fails if the two walks disagree.
func contents(t *testing.T, l *waitList[listItem]) []int {
	t.Helper()
	var fwd, back []int
	for k := l.head; k != nil; k = k.next {
		fwd = append(fwd, k.owner.v)
	}
	for k := l.tail; k != nil; k = k.prev {
		back = append(back, k.owner.v)
	}
	slices.Reverse(back)
	if !slices.Equal(fwd, back) {
		t.Fatalf("forward walk %v, backward walk reversed %v", fwd, back)
	}
	return fwd
}

func TestWaitList(t *testing.T) {
	var l waitList[listItem]
	if !l.empty() || l.front() != nil {
		t.Fatal("zero list not empty")
	}
	items := make([]*listItem, 5)
	for i := range items {
		items[i] = &listItem{v: i}
	}
	l.pushBack(items[1], &items[1].link)
	l.pushBack(items[2], &items[2].link)
	l.pushFront(items[0], &items[0].link)
	l.pushBack(items[3], &items[3].link)
	if got := contents(t, &l); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("after pushes: %v", got)
	}
	// Remove from the middle, the front and the back.
	for _, tc := range []struct {
		rm   int
		want []int
	}{{2, []int{0, 1, 3}}, {0, []int{1, 3}}, {3, []int{1}}, {1, nil}} {
		l.remove(&items[tc.rm].link)
		if k := items[tc.rm].link; k.prev != nil || k.next != nil || k.owner != nil {
			t.Fatalf("removed link %d not cleared: %+v", tc.rm, k)
		}
		if got := contents(t, &l); !slices.Equal(got, tc.want) {
			t.Fatalf("after removing %d: %v, want %v", tc.rm, got, tc.want)
		}
	}
	if !l.empty() || l.front() != nil {
		t.Fatal("list not empty after removing everything")
	}
	// A removed waiter can be queued again.
	l.pushFront(items[4], &items[4].link)
	l.pushFront(items[1], &items[1].link)
	if l.front() != items[1] || !slices.Equal(contents(t, &l), []int{1, 4}) {
		t.Fatalf("re-queued: front %v, %v", l.front(), contents(t, &l))
	}
}
