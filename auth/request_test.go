package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestTokenFromRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target string
		auth   []string // Authorization header values
		want   string
	}{
		{"none", "/ws", nil, ""},
		{"header", "/ws", []string{"Bearer abc.def.ghi"}, "abc.def.ghi"},
		{"header scheme case-insensitive", "/ws", []string{"bearer   abc "}, "abc"},
		{"query", "/ws?token=q.r.s", nil, "q.r.s"},
		{"header wins over query", "/ws?token=query", []string{"Bearer header"}, "header"},
		{"basic header falls back to query", "/ws?token=query", []string{"Basic dXNlcjpwYXNz"}, "query"},
		{"basic header, no query", "/ws", []string{"Basic dXNlcjpwYXNz"}, ""},
		{"empty bearer falls back to query", "/ws?token=query", []string{"Bearer "}, "query"},
		{"scheme only", "/ws", []string{"Bearer"}, ""},
		{"first header counts", "/ws", []string{"Bearer one", "Bearer two"}, "one"},
		{"query escaped", "/ws?token=a%2Bb", nil, "a+b"},
		{"other parameters", "/ws?codec=json&token=t", nil, "t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			for _, h := range tt.auth {
				r.Header.Add("Authorization", h)
			}
			if got := TokenFromRequest(r); got != tt.want {
				t.Errorf("TokenFromRequest = %q, want %q", got, tt.want)
			}
		})
	}
	if got := TokenFromRequest(nil); got != "" {
		t.Errorf("TokenFromRequest(nil) = %q", got)
	}
}
