package redfish

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The machine's event log as the system's SEL log service: the power and
// boot events the IPMI side reports as its SEL, so that an operator reads
// the same history through either protocol.

func selPath(id string) string { return systemPath(id) + "/LogServices/SEL" }

func (s *Server) getLogServices(q *request) error {
	p := systemPath(q.sys.ID) + "/LogServices"
	return writeResource(q, http.StatusOK, collection(p, "#LogServiceCollection.LogServiceCollection", "Log Service Collection", []link{ref(selPath(q.sys.ID))}))
}

func (s *Server) getSEL(q *request) error {
	p := selPath(q.sys.ID)
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":       p,
		"@odata.type":     "#LogService.v1_2_0.LogService",
		"Id":              "SEL",
		"Name":            "System Event Log",
		"ServiceEnabled":  true,
		"OverWritePolicy": "WrapsWhenFull",
		"LogEntryType":    "SEL",
		"DateTime":        s.now().UTC().Format(time.RFC3339),
		"Entries":         ref(p + "/Entries"),
		"Status":          enabled,
	})
}

// getSELEntries lists the entries in full, as BMCs commonly do, so that a
// client reads the log in one request.
func (s *Server) getSELEntries(q *request) error {
	events := q.sys.Machine.Events(0)
	members := make([]map[string]any, 0, len(events))
	for _, e := range events {
		members = append(members, logEntry(q.sys.ID, e))
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":           selPath(q.sys.ID) + "/Entries",
		"@odata.type":         "#LogEntryCollection.LogEntryCollection",
		"Name":                "System Event Log Entries",
		"Members":             members,
		"Members@odata.count": len(members),
	})
}

func (s *Server) getSELEntry(q *request) error {
	eid := q.r.PathValue("eid")
	seq, err := strconv.ParseUint(eid, 10, 64)
	if err == nil && seq > 0 {
		for _, e := range q.sys.Machine.Events(seq - 1) {
			if e.Seq == seq {
				return writeResource(q, http.StatusOK, logEntry(q.sys.ID, e))
			}
		}
	}
	return errNotFound("LogEntry", eid)
}

// logEntry presents an event; its Id is the event's sequence number, which
// stays the same while the event is kept.
func logEntry(sysID string, e machine.Event) map[string]any {
	id := strconv.FormatUint(e.Seq, 10)
	msg := e.Kind.String()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return map[string]any{
		"@odata.id":   selPath(sysID) + "/Entries/" + id,
		"@odata.type": "#LogEntry.v1_8_0.LogEntry",
		"Id":          id,
		"Name":        "Log Entry " + id,
		"EntryType":   "SEL",
		"Created":     e.Time.UTC().Format(time.RFC3339),
		"Severity":    "OK",
		"Message":     msg,
	}
}
