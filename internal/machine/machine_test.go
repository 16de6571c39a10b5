package machine

import (
	"reflect"
	"testing"
)

// Equal compares every field of Identity: a field it forgot would let a
// protocol keep serving what it rendered before that field changed.
func TestIdentityEqualCoversEveryField(t *testing.T) {
	base := Identity{Name: "vm", MACs: []string{"00:50:56:00:00:01"}, Disks: []Disk{{ID: "2000"}}, BootOrder: []string{"disk"}}
	if !base.Equal(base) {
		t.Fatal("an identity differs from itself")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		changed := base
		changed.MACs = append([]string(nil), base.MACs...)
		changed.Disks = append([]Disk(nil), base.Disks...)
		changed.BootOrder = append([]string(nil), base.BootOrder...)
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Int:
			f.SetInt(f.Int() + 1)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Slice:
			f.Index(0).Set(reflect.Zero(f.Type().Elem()))
		default:
			t.Fatalf("field %s of kind %s: teach this test to change it", typ.Field(i).Name, f.Kind())
		}
		if base.Equal(changed) {
			t.Errorf("Equal misses a change of %s", typ.Field(i).Name)
		}
	}
}
