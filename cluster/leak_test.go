package cluster

import (
	"testing"

	"github.com/parleychat/parley/internal/testenv"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }
