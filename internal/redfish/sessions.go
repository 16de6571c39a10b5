package redfish

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// maxSessions bounds the sessions kept at once. Ironic opens one per
// conductor and node and does not always close it; past the bound a client
// gets 503 SessionLimitExceeded, on which sushy falls back to Basic auth.
const maxSessions = 256

// maxSessionsPerUser bounds the sessions one set of credentials (one
// system's user) holds, so that it cannot take every other system's.
// Ironic keeps one per node and conductor.
const maxSessionsPerUser = 16

// session is one Redfish session (DSP0266 §13.3.4). It holds the caller's
// principal, never the password.
type session struct {
	id       string
	user     string
	who      principal
	created  time.Time
	lastUsed time.Time
}

// sessionStore keeps the sessions, keyed by a hash of their token so that
// lookups do not compare secrets byte by byte.
type sessionStore struct {
	mu      sync.Mutex
	timeout time.Duration
	byToken map[[sha256.Size]byte]*session
}

func newSessionStore(timeout time.Duration) *sessionStore {
	return &sessionStore{timeout: timeout, byToken: map[[sha256.Size]byte]*session{}}
}

// expire drops the sessions idle for the timeout or longer. Callers hold mu.
func (st *sessionStore) expire(now time.Time) {
	for k, s := range st.byToken {
		if now.Sub(s.lastUsed) >= st.timeout {
			delete(st.byToken, k)
		}
	}
}

// create opens a session and returns its token; ok is false at the limit.
func (st *sessionStore) create(user string, who principal, now time.Time) (token string, s session, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expire(now)
	if len(st.byToken) >= maxSessions {
		return "", session{}, false
	}
	mine := 0
	for _, o := range st.byToken {
		if o.who == who {
			mine++
		}
	}
	if mine >= maxSessionsPerUser {
		return "", session{}, false
	}
	token = rand.Text()
	// The stored session is a separate value: storing &s would let the
	// caller copy the named result after the unlock while use() writes
	// its lastUsed under the lock (a data race the race detector found).
	p := &session{id: rand.Text(), user: user, who: who, created: now, lastUsed: now}
	st.byToken[sha256.Sum256([]byte(token))] = p
	return token, *p, true
}

// use returns the live session of token and restarts its idle timer.
func (st *sessionStore) use(token string, now time.Time) (session, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expire(now)
	s, ok := st.byToken[sha256.Sum256([]byte(token))]
	if !ok {
		return session{}, false
	}
	s.lastUsed = now
	return *s, true
}

// list returns who's live sessions, oldest first: a caller sees only the
// sessions opened with its own credentials.
func (st *sessionStore) list(who principal, now time.Time) []session {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expire(now)
	var out []session
	for _, s := range st.byToken {
		if s.who == who {
			out = append(out, *s)
		}
	}
	slices.SortFunc(out, func(a, b session) int {
		return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.id, b.id))
	})
	return out
}

// remove ends who's session id.
func (st *sessionStore) remove(id string, who principal, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expire(now)
	for k, s := range st.byToken {
		if s.id == id && s.who == who {
			delete(st.byToken, k)
			return true
		}
	}
	return false
}

const sessionsPath = "/redfish/v1/SessionService/Sessions"

func sessionView(s session) map[string]any {
	return map[string]any{
		"@odata.id":   sessionsPath + "/" + s.id,
		"@odata.type": "#Session.v1_3_0.Session",
		"Id":          s.id,
		"Name":        "User Session",
		"UserName":    s.user,
	}
}

func (s *Server) getSessionService(q *request) error {
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":      "/redfish/v1/SessionService",
		"@odata.type":    "#SessionService.v1_1_8.SessionService",
		"Id":             "SessionService",
		"Name":           "Session Service",
		"ServiceEnabled": true,
		"SessionTimeout": int(s.sessions.timeout / time.Second),
		"Sessions":       ref(sessionsPath),
		"Status":         enabled,
	})
}

func (s *Server) getSessions(q *request) error {
	var members []link
	for _, sess := range s.sessions.list(q.who, s.now()) {
		members = append(members, ref(sessionsPath+"/"+sess.id))
	}
	return writeResource(q, http.StatusOK, collection(sessionsPath, "#SessionCollection.SessionCollection", "Session Collection", members))
}

func (s *Server) getSession(q *request) error {
	id := q.r.PathValue("sid")
	for _, sess := range s.sessions.list(q.who, s.now()) {
		if sess.id == id {
			return writeResource(q, http.StatusOK, sessionView(sess))
		}
	}
	return errNotFound("Session", id)
}

// deleteSession ends a session: sushy does it when its auth object closes.
func (s *Server) deleteSession(q *request) error {
	id := q.r.PathValue("sid")
	if !s.sessions.remove(id, q.who, s.now()) {
		return errNotFound("Session", id)
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// createSession is the login of DSP0266 §13.3.4.2: POST {UserName,
// Password} answered 201 with X-Auth-Token and Location, which is what
// sushy's SessionAuth expects; without them it falls back to Basic auth.
// It answers POST to the collection (what sushy sends) and to its Members
// alike: DSP0266 "POST (create)" makes the two equivalent, and a service
// that creates members shall take both.
func (s *Server) createSession(q *request) error {
	body, err := readBody(q)
	if err != nil {
		return err
	}
	creds := map[string]string{"UserName": "", "Password": ""}
	for _, k := range sortedKeys(body) {
		if _, ok := creds[k]; !ok {
			if isAnnotation(k) {
				continue
			}
			return newError(http.StatusBadRequest, "PropertyUnknown", []string{"#/" + k}, quote(k))
		}
		var v string
		if err := json.Unmarshal(body[k], &v); err != nil {
			shown := rawValue(body[k])
			if k == "Password" {
				shown = hidden
			}
			return errPropertyType("#/"+k, k, shown)
		}
		creds[k] = v
	}
	for _, k := range []string{"UserName", "Password"} {
		if _, ok := body[k]; !ok {
			return newError(http.StatusBadRequest, "CreateFailedMissingReqProperties", []string{"#/" + k}, k)
		}
	}
	ip := clientIP(q.r)
	if wait := s.lockedOut(s.index(), ip, ""); wait > 0 {
		return errLockedOut(wait)
	}
	who, ok := s.checkCredentials(creds["UserName"], creds["Password"])
	if !ok {
		s.failed(ip, "")
		return errUnauthorized(wrongCredentials)
	}
	token, sess, ok := s.sessions.create(creds["UserName"], who, s.now())
	if !ok {
		e := newError(http.StatusServiceUnavailable, "SessionLimitExceeded", nil)
		e.header.Set("Retry-After", strconv.Itoa(retryAfter))
		return e
	}
	h := q.w.Header()
	h.Set("X-Auth-Token", token)
	h.Set("Location", sessionsPath+"/"+sess.id)
	// The token is a credential: no cache may keep the response.
	h.Set("Cache-Control", "no-store")
	return writeResource(q, http.StatusCreated, sessionView(sess))
}
