//go:build !linux

package ring

// The link needs memfd, eventfd and SCM_RIGHTS: on other systems the
// package builds (layout, validator) but has no Listen or Dial.
