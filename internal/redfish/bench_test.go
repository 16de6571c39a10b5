package redfish

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkGetSystem is a GET of one system with Basic credentials, with 5,
// 1000 and 10,000 systems served, each with its own password (the worst
// case: no two systems share a principal). With Config.Version the systems
// are indexed once, and the cost does not grow with their number.
func BenchmarkGetSystem(b *testing.B) {
	for _, n := range []int{5, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			systems := make([]System, n)
			for i := range systems {
				id := fmt.Sprintf("vm-%d", i)
				systems[i] = System{ID: id, Machine: newFake(id), Username: "admin", Password: fmt.Sprintf("pw-%d", i)}
			}
			srv, err := New(Config{Systems: func() []System { return systems }, Version: func() uint64 { return 1 }, ServiceUUID: testUUID})
			if err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/redfish/v1/Systems/vm-1", nil)
			r.Header.Set("Authorization", basic("admin", "pw-1"))
			srv.ServeHTTP(httptest.NewRecorder(), r) // the index is built once, here
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
