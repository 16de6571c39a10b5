package config

// Simulator mode's defaults: `serve` without --config bridges an embedded
// vCenter simulator with these settings (each has a flag), and prints the
// credentials in its banner. They live here with the file's defaults so
// that every default has one definition.
const (
	// SimListen is where the simulator's BMCs listen: loopback, since
	// their credentials are printed for anyone to read.
	SimListen = "127.0.0.1"
	// SimBasePort is the first BMC's UDP port (the next VM's is one
	// higher): 6230 is where VirtualBMC and sushy-tools' users expect
	// their first BMC.
	SimBasePort = 6230
	// SimAddr is where the simulated vCenter's SDK listens.
	SimAddr = "127.0.0.1:8989"
	// SimUser and SimPassword are every simulated BMC's credentials.
	SimUser     = DefaultUsername
	SimPassword = "password"
	// SimRedfishAddress is where Redfish listens in simulator mode.
	SimRedfishAddress = "127.0.0.1:8000"
	// SimConsoleAddress is where the concentrator listens in simulator
	// mode; a configuration file turns it on by giving console.address.
	SimConsoleAddress = "127.0.0.1:13370"
)
