package ipmi

import (
	"errors"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// completionCode maps a machine error to the completion code a client
// understands (IPMI v2.0 §5.2 Table 5-2). It is the only such mapping.
func completionCode(err error) types.CompletionCode {
	switch {
	case err == nil:
		return types.CodeOK
	case errors.Is(err, machine.ErrBusy), errors.Is(err, machine.ErrUnavailable):
		// C0h "node busy": Ironic retries on it ("Node busy" is in its
		// retryable list), which is right while vCenter is away or busy.
		return types.CodeNodeBusy
	case errors.Is(err, machine.ErrInvalidState):
		// D5h "command not supported in present state" (a reset of a
		// powered-off VM, a soft-off without VMware Tools).
		return types.CodeNotSupported
	case errors.Is(err, machine.ErrUnsupported):
		// D6h "sub-function disabled or unavailable" (NMI on a vSphere
		// that cannot send one).
		return types.CodeSubFnDisabled
	case errors.Is(err, machine.ErrInvalidArgument):
		return types.CodeRequestDataFieldInvalid
	case errors.Is(err, machine.ErrNotFound):
		return types.CodeRequestedDataNotPresent
	}
	return types.CodeUnspecifiedError
}
