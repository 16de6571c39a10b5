module github.com/ipmi-vmware-bridge/ipmi-vmware-bridge

go 1.26.8

require (
	github.com/bougou/go-ipmi v0.9.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/vmware/govmomi v0.56.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sync v0.25.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
