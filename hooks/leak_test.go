package hooks_test

import (
	"testing"

	"github.com/parleychat/parley/internal/testenv"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }
