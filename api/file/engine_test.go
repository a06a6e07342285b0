package file

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/evchan"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCompleter posts an op's completion on its channel, as api's does,
// for tests that drive an Engine directly; it keeps the error.
type testCompleter struct {
	r      evchan.Reservation
	cookie uint64
	err    error
	posted error // Post's error: the channel was closed under the op
}

func (c *testCompleter) CompleteFile(ev evchan.Event, err error) {
	ev.Cookie = c.cookie
	c.err = err
	c.posted = c.r.Post(ev)
	c.r.Release()
}

// newTestOp returns an op of kind on req whose completion, with cookie,
// goes to ec (its slot reserved now, as api's Submit does).
func newTestOp(t testing.TB, ec *evchan.Channel, kind Kind, req *Request, cookie uint64) (*Op, *testCompleter) {
	t.Helper()
	c := &testCompleter{cookie: cookie}
	var err error
	if c.r, err = ec.Reserve(1); err != nil {
		t.Fatal(err)
	}
	return &Op{Kind: kind, Req: req, Completer: c, Done: make(chan struct{})}, c
}
