package machine

import "errors"

// ErrConsoleNotConnected is returned by SerialConsole.Write while the
// system's serial port has no connection to the bridge (the VM is off, or
// its host has not connected yet): a real BMC's SOL drops keystrokes then
// too, but a client is better told.
var ErrConsoleNotConnected = errors.New("the serial port is not connected")

// SerialConsole is a system's serial port as a BMC offers it: IPMI
// Serial-over-LAN, the management API's console and Redfish's
// SerialConsole all reach the VM's serial line through it, so that they
// meet at the Machine as the other protocols' actions do.
type SerialConsole interface {
	// Connected reports whether the serial port is connected now.
	Connected() bool
	// Attach starts reading the system's output: with replay, what is
	// kept of earlier output first, then live output without a gap. A
	// reader that falls behind loses output rather than holding up the
	// system or other readers.
	Attach(replay bool) ConsoleReader
	// Write types p at the system. It fails with ErrConsoleNotConnected
	// (or an error wrapping it) while the port is not connected.
	Write(p []byte) (int, error)
}

// ConsoleReader is one reader of a SerialConsole's output.
type ConsoleReader interface {
	// Output delivers the output in order, in chunks the reader must not
	// modify; it is closed when the console ends or the reader is closed.
	Output() <-chan []byte
	// Close stops reading; it may be called more than once.
	Close()
}
