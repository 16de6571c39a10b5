package vsphere

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// mapError gives protocols the machine error kind and keeps vCenter's
// fault in the chain, for logs and for fault.Is.
func TestMapErrorKeepsBothChains(t *testing.T) {
	t.Parallel()
	taskErr := func(f types.BaseMethodFault) error {
		return fmt.Errorf("task: %w", task.Error{LocalizedMethodFault: &types.LocalizedMethodFault{Fault: f, LocalizedMessage: "from vCenter"}})
	}
	for _, tc := range []struct {
		name  string
		err   error
		kind  error
		fault types.BaseMethodFault
	}{
		{"tools", taskErr(&types.ToolsUnavailable{}), machine.ErrInvalidState, &types.ToolsUnavailable{}},
		{"power state", taskErr(&types.InvalidPowerState{}), machine.ErrInvalidState, &types.InvalidPowerState{}},
		{"not implemented", taskErr(&types.NotImplemented{}), machine.ErrUnsupported, &types.NotImplemented{}},
		{"busy", taskErr(&types.TaskInProgress{}), machine.ErrBusy, &types.TaskInProgress{}},
		{"deadline", context.DeadlineExceeded, machine.ErrUnavailable, nil},
	} {
		got := mapError(tc.err)
		if !errors.Is(got, tc.kind) {
			t.Errorf("%s: %v is not %v", tc.name, got, tc.kind)
		}
		if tc.fault != nil && !fault.Is(got, tc.fault) {
			t.Errorf("%s: %v lost vCenter's fault", tc.name, got)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: %v lost the original error", tc.name, got)
		}
	}
	if mapError(nil) != nil {
		t.Error("mapError(nil) is not nil")
	}
}
