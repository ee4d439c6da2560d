package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzOverrideBody posts arbitrary bodies to drain, maint and undrain: the
// answer is always a JSON object with a 2xx or 4xx status, never a 5xx and
// never a panic, and the service is called exactly when the body is empty
// or one JSON object of reason and by, with those values.
func FuzzOverrideBody(f *testing.F) {
	for _, body := range []string{
		``, `{}`, `   `, `null`, `{"reason":"deploy 43","by":"bob"}`, `{"reason":"slow"}`, `{"by":""}`,
		`{"reason":`, `{"reason":"x","state":"ready"}`, `{} {}`, `{}x`, `[]`, `"reason"`, `{"REASON":"upper","By":"b"}`,
		`{"reason":"a\u0000b\nc;d#e"}`, `{"reason":"\ud800"}`, "{\"reason\":\"\xff\xfe\"}", `{"reason":1e999}`,
		`{"reason":"x","reason":"y"}`, `{}}`, `{"reason":"x"}]`, `{"by":null}`, "\ufeff{}", `{"reason":"` + strings.Repeat("x", MaxBody) + `"}`,
		strings.Repeat("[", 10000),
	} {
		f.Add(uint8(len(body)), []byte(body))
	}
	f.Fuzz(func(t *testing.T, action uint8, body []byte) {
		act := []string{ActionDrain, ActionMaint, ActionUndrain}[action%3]
		s, fake := newTestServer("s3cret")
		req := httptest.NewRequest(http.MethodPost, "/v1/backends/be_web/servers/srv1/"+act, bytes.NewReader(body))
		req.RemoteAddr = "192.0.2.7:40000"
		req.Header.Set("Authorization", "Bearer s3cret")
		rec := httptest.NewRecorder()
		s.Routes().ServeHTTP(rec, req)

		var answer map[string]any
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" || json.Unmarshal(rec.Body.Bytes(), &answer) != nil || answer == nil {
			t.Fatalf("status %d, %s: not a JSON object: %q", rec.Code, ct, rec.Body)
		}
		calls := fake.overrideCalls()
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted:
			if calls != 1 {
				t.Fatalf("status %d after %d calls", rec.Code, calls)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if msg, _ := answer["error"].(string); calls != 0 || msg == "" {
				t.Fatalf("status %d after %d calls: %v", rec.Code, calls, answer)
			}
			if len(body) > MaxBody && rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d bytes: status %d", len(body), rec.Code)
			}
			return
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}

		// Reference: a body is empty, or a JSON value that sets only reason
		// and by (any case), which a plain decode reads the same.
		var want overrideBody
		if len(bytes.TrimSpace(body)) > 0 {
			var fields map[string]json.RawMessage
			dec := json.NewDecoder(bytes.NewReader(body))
			if err := dec.Decode(&fields); err != nil {
				t.Fatalf("accepted %q, which is not a JSON object: %v", body, err)
			}
			rest := bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")
			if len(rest) > 0 {
				t.Fatalf("accepted %q with %q after the object", body, rest)
			}
			for k := range fields {
				if !strings.EqualFold(k, "reason") && !strings.EqualFold(k, "by") {
					t.Fatalf("accepted %q with field %q", body, k)
				}
			}
			if err := json.Unmarshal(body[:dec.InputOffset()], &want); err != nil {
				t.Fatalf("accepted %q: %v", body, err)
			}
		}
		if want.By == "" {
			want.By = req.RemoteAddr
		}
		got := fake.calls[0]
		if got.Backend != "be_web" || got.Server != "srv1" || got.Action != act || got.Reason != want.Reason || got.By != want.By {
			t.Fatalf("body %q: service called with %+v, want reason %q by %q", body, got, want.Reason, want.By)
		}
		var res OverrideResult
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.By != want.By || act != ActionUndrain && res.Reason != want.Reason {
			t.Fatalf("answer %s does not read back (%v)", rec.Body, err)
		}
	})
}
