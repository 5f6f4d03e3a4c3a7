package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"
)

// SMTP is the mail server e-mail channels send through.
type SMTP struct {
	// Addr is host:port of the server (submission, usually :587).
	Addr string `yaml:"addr"`
	// From is the envelope sender and From header.
	From     string `yaml:"from"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (a file, so that it stays out of the config).
	PasswordFile string `yaml:"password_file"`
	// RequireTLS refuses to send (or authenticate) unless the server offers STARTTLS.
	RequireTLS bool `yaml:"require_tls"`
	// CAFile holds PEM certificates to trust for STARTTLS instead of the system's.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify accepts any server certificate after STARTTLS (test servers only).
	InsecureSkipVerify bool          `yaml:"insecure_skip_verify"`
	Timeout            time.Duration `yaml:"timeout"`

	password string
	rootCAs  *x509.CertPool
}

// load checks the settings and reads the password and CA files.
func (s *SMTP) load() error {
	if s.Addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(s.Addr); err != nil {
		return fmt.Errorf("notifications.smtp.addr: want host:port: %w", err)
	}
	if a, err := mail.ParseAddress(s.From); err != nil || a.Address != s.From {
		return fmt.Errorf("notifications.smtp.from %q: want a bare e-mail address", s.From)
	}
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return fmt.Errorf("notifications.smtp.password_file: %w", err)
		}
		s.password = strings.TrimRight(string(b), "\r\n")
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return fmt.Errorf("notifications.smtp.ca_file: %w", err)
		}
		s.rootCAs = x509.NewCertPool()
		if !s.rootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("notifications.smtp.ca_file %s: no PEM certificate", s.CAFile)
		}
	}
	return nil
}

// Mail is one message with a plain-text and an HTML body.
type Mail struct {
	To        []string
	Subject   string
	Text      string
	HTML      string
	MessageID string // the delivery's idempotency key: a duplicate after a crash is recognisable
}

// send delivers m: STARTTLS when the server offers it (required when RequireTLS), then AUTH
// when a username is set.
func (s *SMTP) send(ctx context.Context, m Mail) error {
	if s.Addr == "" {
		return errors.New("e-mail channel: no SMTP server configured (notifications.smtp.addr)")
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp: connecting to %s: %w", s.Addr, err)
	}
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp: greeting from %s: %w", s.Addr, err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return fmt.Errorf("smtp: EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: s.rootCAs, InsecureSkipVerify: s.InsecureSkipVerify, MinVersion: tls.VersionTLS12}); err != nil { //nolint:gosec // opt-in, for test servers
			return fmt.Errorf("smtp: STARTTLS: %w", err)
		}
	} else if s.RequireTLS {
		return fmt.Errorf("smtp: %s does not offer STARTTLS and notifications.smtp.require_tls is set", s.Addr)
	}
	if s.Username != "" {
		// PlainAuth itself refuses to send the password in clear except to localhost.
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.password, host)); err != nil {
			return fmt.Errorf("smtp: AUTH: %w", err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	for _, to := range m.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp: RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	msg, err := s.compose(m)
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp: writing the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: message refused: %w", err)
	}
	return c.Quit()
}

// compose renders a multipart/alternative message: plain text first, HTML preferred.
func (s *SMTP) compose(m Mail) ([]byte, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct{ typ, content string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.typ + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, fmt.Errorf("composing the message: %w", err)
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := qp.Write([]byte(part.content)); err != nil {
			return nil, fmt.Errorf("composing the message: %w", err)
		}
		if err := qp.Close(); err != nil {
			return nil, fmt.Errorf("composing the message: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("composing the message: %w", err)
	}
	var out bytes.Buffer
	domain := "usagemeter.local"
	if _, d, ok := strings.Cut(s.From, "@"); ok {
		domain = d
	}
	hdr := [][2]string{
		{"From", s.From},
		{"To", strings.Join(m.To, ", ")},
		{"Subject", mime.QEncoding.Encode("utf-8", m.Subject)},
		{"Date", time.Now().UTC().Format(time.RFC1123Z)},
		{"Message-ID", "<" + m.MessageID + "@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "multipart/alternative; boundary=" + mw.Boundary()},
	}
	for _, h := range hdr {
		fmt.Fprintf(&out, "%s: %s\r\n", h[0], h[1])
	}
	out.WriteString("\r\n")
	out.Write(body.Bytes())
	return out.Bytes(), nil
}
