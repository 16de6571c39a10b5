package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// mapError turns a govmomi error into one wrapping a machine error, keeping
// the vSphere fault text for the log. It is the one place where vSphere
// faults gain protocol-neutral meaning.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		kind = machine.ErrUnavailable
	case fault.Is(err, &types.ManagedObjectNotFound{}):
		kind = machine.ErrNotFound
	case fault.Is(err, &types.TaskInProgress{}):
		kind = machine.ErrBusy
	case fault.Is(err, &types.ToolsUnavailable{}):
		return fmt.Errorf("%w: VMware Tools are not running in the guest: %w", machine.ErrInvalidState, err)
	case fault.Is(err, &types.InvalidPowerState{}), fault.Is(err, &types.InvalidState{}):
		kind = machine.ErrInvalidState
	case fault.Is(err, &types.NotSupported{}), fault.Is(err, &types.NotImplemented{}), fault.Is(err, &types.MethodNotFound{}):
		kind = machine.ErrUnsupported
	case fault.Is(err, &types.NotAuthenticated{}), isNetError(err):
		kind = machine.ErrUnavailable
	case fault.Is(err, &types.InvalidArgument{}):
		kind = machine.ErrInvalidArgument
	default:
		return err
	}
	return fmt.Errorf("%w: %w", kind, err) // both chains: the kind for protocols, the fault for logs and fault.Is
}

func isNetError(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}
