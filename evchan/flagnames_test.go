package evchan

import (
	"errors"
	"testing"
)

// TestFlagNames: named poster bits print by name, unnamed ones as hex, and
// NameFlag refuses what is not one poster bit or renames one.
func TestFlagNames(t *testing.T) {
	const a, b Flags = 1 << 30, 1 << 31 // bits no package of zcnet uses
	if err := NameFlag(a, "test-a"); err != nil {
		t.Fatal(err)
	}
	if err := NameFlag(a, "test-a"); err != nil {
		t.Fatalf("naming again with the same name: %v", err)
	}
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{0, "0"},
		{FlagInline | FlagMore, "inline|more"},
		{FlagMore | a, "more|test-a"},
		{a | b, "test-a|0x80000000"},
		{1 << 2, "0x4"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint32(tc.f), got, tc.want)
		}
	}
	for _, tc := range []struct {
		f    Flags
		name string
	}{{a, "other"}, {FlagMore, "x"}, {a | b, "x"}, {b, ""}} {
		if err := NameFlag(tc.f, tc.name); !errors.Is(err, ErrInvalid) {
			t.Errorf("NameFlag(%#x, %q): %v, want ErrInvalid", uint32(tc.f), tc.name, err)
		}
	}
}
