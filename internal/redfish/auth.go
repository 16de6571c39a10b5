package redfish

import (
	"crypto/hmac"
	"crypto/sha256"
)

// principal stands for a pair of credentials: an HMAC of user name and
// password under a key that lives as long as the server. Sessions keep it
// instead of the password, and a request is allowed a system when its
// principal equals the system's. Because the systems' credentials are read
// at each request, changing a BMC's password ends the sessions opened with
// the old one.
type principal [sha256.Size]byte

func (s *Server) principalOf(user, password string) principal {
	m := hmac.New(sha256.New, s.credKey)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var p principal
	m.Sum(p[:0])
	return p
}

// authorize authenticates the request for an operation of scope sc, by its
// X-Auth-Token (a session) or else its HTTP Basic credentials, and finds
// the systems they open. Credentials that open no system get 401 (sushy
// then re-authenticates a session, or gives up on Basic auth); a system
// the credentials do not open is answered 404, as if it did not exist, like
// its absence from the collections.
func (s *Server) authorize(q *request, sc scope, kind string) error {
	if sc == public {
		return nil
	}
	if tok := q.r.Header.Get("X-Auth-Token"); tok != "" {
		sess, ok := s.sessions.use(tok, s.now())
		if !ok {
			return errUnauthorized("The session has expired or was deleted.")
		}
		q.who = sess.who
	} else if user, pass, ok := q.r.BasicAuth(); ok {
		q.who = s.principalOf(user, pass)
	} else {
		return errUnauthorized("Send HTTP Basic credentials or the X-Auth-Token of a session.")
	}
	q.visible = s.visibleTo(q.who)
	if len(q.visible) == 0 {
		return errUnauthorized(wrongCredentials)
	}
	if sc == oneSystem {
		id := q.r.PathValue("id")
		for _, sys := range q.visible {
			if sys.ID == id {
				q.sys = sys
				return nil
			}
		}
		return errNotFound(kind, id)
	}
	return nil
}

// visibleTo returns the systems that who's credentials open, in the order
// Config.Systems gives them; of two systems with one ID the first counts.
func (s *Server) visibleTo(who principal) []System {
	var out []System
	seen := map[string]bool{}
	for _, sys := range s.systems() {
		if sys.ID == "" || sys.Machine == nil || sys.Username == "" || sys.Password == "" || seen[sys.ID] {
			continue
		}
		seen[sys.ID] = true
		p := s.principalOf(sys.Username, sys.Password)
		if hmac.Equal(p[:], who[:]) {
			out = append(out, sys)
		}
	}
	return out
}

const wrongCredentials = "The user name or the password is wrong."

// checkCredentials reports whether user and password open any system, for
// session creation.
func (s *Server) checkCredentials(user, password string) (principal, bool) {
	who := s.principalOf(user, password)
	return who, len(s.visibleTo(who)) > 0
}
