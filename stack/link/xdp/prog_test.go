package xdp

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestProgramShape checks the assembled program without loading it: an
// XDP program that references exactly its three maps, whose every jump
// lands, that can be encoded, ends every path in exit, and whose only
// verdicts are XDP_PASS and bpf_redirect_map's (with XDP_PASS as the
// fallback).
func TestProgramShape(t *testing.T) {
	spec := programSpec()
	ps := spec.Programs[progName]
	if ps == nil || ps.Type != ebpf.XDP {
		t.Fatalf("program %q missing or not XDP: %+v", progName, ps)
	}
	ins := ps.Instructions
	refs := map[string]int{}
	for _, in := range ins {
		if r := in.Reference(); r != "" && in.IsLoadFromMap() {
			refs[r]++
		}
	}
	if refs[mapAddrs4] != 1 || refs[mapAddrs6] != 1 || refs[mapXSKs] != 1 {
		t.Fatalf("map references %v, want one each of %s, %s, %s", refs, mapAddrs4, mapAddrs6, mapXSKs)
	}
	for name := range refs {
		if spec.Maps[name] == nil {
			t.Fatalf("reference to undeclared map %q", name)
		}
	}
	if spec.Maps[mapXSKs].Type != ebpf.XSKMap {
		t.Fatalf("socket map type %v", spec.Maps[mapXSKs].Type)
	}
	// Every jump's label is a symbol.
	syms, err := ins.SymbolOffsets()
	if err != nil {
		t.Fatalf("symbols: %v", err)
	}
	for _, in := range ins {
		if in.OpCode.JumpOp() != asm.InvalidJumpOp && in.OpCode.JumpOp() != asm.Call && in.OpCode.JumpOp() != asm.Exit {
			if _, ok := syms[in.Reference()]; !ok {
				t.Fatalf("jump %v to unknown label %q", in, in.Reference())
			}
		}
	}
	if err := ins.Marshal(nopWriter{}, binary.LittleEndian); err != nil {
		t.Fatalf("encoding: %v", err)
	}
	if len(ins) > 200 {
		t.Fatalf("%d instructions: the program grew", len(ins))
	}
	// The last instruction is exit, preceded by the redirect call with
	// XDP_PASS as its flags (R3).
	n := len(ins)
	if ins[n-1].OpCode.JumpOp() != asm.Exit {
		t.Fatalf("last instruction %v, want exit", ins[n-1])
	}
	if !ins[n-2].IsBuiltinCall() || asm.BuiltinFunc(ins[n-2].Constant) != asm.FnRedirectMap {
		t.Fatalf("before exit: %v, want call bpf_redirect_map", ins[n-2])
	}
	if ins[n-3].Dst != asm.R3 || ins[n-3].Constant != xdpPass {
		t.Fatalf("redirect flags: %v, want R3 = XDP_PASS", ins[n-3])
	}
	// Every other exit returns XDP_PASS in R0.
	exits := 0
	for i, in := range ins {
		if in.OpCode.JumpOp() == asm.Exit && i != n-1 {
			exits++
			if prev := ins[i-1]; prev.Dst != asm.R0 || prev.Constant != xdpPass {
				t.Fatalf("exit at %d after %v, want R0 = XDP_PASS", i, prev)
			}
		}
	}
	if exits != 1 {
		t.Fatalf("%d pass exits, want 1 (the shared label)", exits)
	}
}

// TestWire16 checks the EtherType comparison constants read as a
// native-endian load of the wire bytes would.
func TestWire16(t *testing.T) {
	native := binary.NativeEndian.Uint16([]byte{0x86, 0xdd})
	if wire16(0x86dd) != int32(native) {
		t.Fatalf("wire16(0x86dd) = %#x, want %#x", wire16(0x86dd), native)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
