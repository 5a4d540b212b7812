package services

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEveryVariableIsDocumented keeps the README's configuration table in
// step with Config.
func TestEveryVariableIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, ok := f.Tag.Lookup("envconfig")
		if !ok {
			continue
		}
		row := "| `MM_" + name + "` | "
		if def := f.Tag.Get("default"); def != "" {
			row += "`" + def + "`"
		}
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md has no row starting %q for Config.%s", row, f.Name)
		}
	}
}

func TestConfigRejectsHalfDistributed(t *testing.T) {
	t.Setenv("MM_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	t.Setenv("MM_REDIS_ADDR", "")
	if _, err := LoadConfig(); err == nil {
		t.Fatal("LoadConfig accepted MM_AMQP_URL without MM_REDIS_ADDR")
	}
}
