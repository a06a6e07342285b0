package stack

// Layers built on a Stack (package api's socket API) hold goroutines and
// endpoints of their own. Closing the Stack under them would abort their
// endpoints but leave their goroutines waiting for work that never comes,
// so such a layer registers its Close here, and Stack.Close runs it first.

// closer is one registration of OnClose.
type closer struct {
	fn func()
}

// OnClose registers fn to run at the start of Close, before any endpoint is
// aborted, for a layer built on the stack that must shut down with it
// (api.New registers the socket API's Close). Registrations run in reverse
// order, each once, without the stack's lock held, so fn may use the stack.
// The returned function removes the registration; a layer that is closed
// on its own calls it. If the stack is closed (or closing) already, fn runs at once.
func (st *Stack) OnClose(fn func()) (remove func()) {
	c := &closer{fn: fn}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		fn()
		return func() {}
	}
	st.closers = append(st.closers, c)
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		for i, o := range st.closers {
			if o == c {
				st.closers = append(st.closers[:i], st.closers[i+1:]...)
				return
			}
		}
	}
}

// runClosers runs the OnClose registrations Close took, newest first.
func runClosers(cs []*closer) {
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i].fn()
	}
}
