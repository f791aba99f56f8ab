package server_test

import (
	"os"
	"testing"

	"qss/internal/zdbtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	zdbtest.RemoveBinary()
	os.Exit(code)
}
