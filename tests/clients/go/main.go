// Drives an unmodified sentinel-aware Go client whose only sentinel is the coordinator, and
// prints one JSON object per line of what happened (the protocol of
// tests/clients/sentinel_client.py), for a scenario test to read.
//
// Usage: sentinel-client <go-redis|rueidis|valkey-go> <HOST:PORT> <master-name> <seconds> <resp2|resp3>
//
// Writes through the discovered master in a loop, reading each key back; prints `ready` after
// the first write, `write` whenever a write lands on a master other than the last one (asked with `CONFIG GET
// replica-announce-ip port` through the same client), and `error` whenever the kind of failure
// changes. Library defaults everywhere but the protocol and timeouts short enough to see a
// failover.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	valkey "github.com/valkey-io/valkey-go"
)

type target interface {
	// writeAndLocate writes key and returns the announced ip:port of the master that took it.
	writeAndLocate(ctx context.Context, key, value string) (string, error)
}

func emit(fields map[string]any) {
	line, _ := json.Marshal(fields)
	os.Stdout.Write(append(line, '\n'))
}

// readBack fails unless a key read back what was written to it.
func readBack(key, wrote, read string) error {
	if read != wrote {
		return fmt.Errorf("%s read back %q, wrote %q", key, read, wrote)
	}
	return nil
}

func where(config map[string]string) (string, error) {
	ip, port := config["replica-announce-ip"], config["port"]
	if ip == "" || port == "" {
		return "", fmt.Errorf("CONFIG GET answered %v", config)
	}
	return ip + ":" + port, nil
}

type goRedis struct{ client *goredis.Client }

func (t goRedis) writeAndLocate(ctx context.Context, key, value string) (string, error) {
	if err := t.client.Set(ctx, key, value, 0).Err(); err != nil {
		return "", err
	}
	if err := readBack(key, value, t.client.Get(ctx, key).Val()); err != nil {
		return "", err
	}
	config := map[string]string{}
	for _, parameter := range []string{"replica-announce-ip", "port"} {
		got, err := t.client.ConfigGet(ctx, parameter).Result()
		if err != nil {
			return "", err
		}
		config[parameter] = got[parameter]
	}
	return where(config)
}

type rueidisTarget struct{ client rueidis.Client }

func (t rueidisTarget) writeAndLocate(ctx context.Context, key, value string) (string, error) {
	if err := t.client.Do(ctx, t.client.B().Set().Key(key).Value(value).Build()).Error(); err != nil {
		return "", err
	}
	read, err := t.client.Do(ctx, t.client.B().Get().Key(key).Build()).ToString()
	if err != nil {
		return "", err
	}
	if err := readBack(key, value, read); err != nil {
		return "", err
	}
	config, err := t.client.Do(ctx, t.client.B().ConfigGet().Parameter("replica-announce-ip", "port").Build()).AsStrMap()
	if err != nil {
		return "", err
	}
	return where(config)
}

type valkeyTarget struct{ client valkey.Client }

func (t valkeyTarget) writeAndLocate(ctx context.Context, key, value string) (string, error) {
	if err := t.client.Do(ctx, t.client.B().Set().Key(key).Value(value).Build()).Error(); err != nil {
		return "", err
	}
	read, err := t.client.Do(ctx, t.client.B().Get().Key(key).Build()).ToString()
	if err != nil {
		return "", err
	}
	if err := readBack(key, value, read); err != nil {
		return "", err
	}
	config, err := t.client.Do(ctx, t.client.B().ConfigGet().Parameter("replica-announce-ip", "port").Build()).AsStrMap()
	if err != nil {
		return "", err
	}
	return where(config)
}

// moduleVersion is the version of the module that provides the package of value's type.
func moduleVersion(value any) string {
	path := reflect.TypeOf(value).PkgPath()
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if strings.HasPrefix(path, dep.Path) {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: sentinel-client <go-redis|rueidis|valkey-go> <HOST:PORT> <master-name> <seconds> <resp2|resp3>")
		os.Exit(2)
	}
	lib, sentinel, name, protocol := os.Args[1], os.Args[2], os.Args[3], os.Args[5]
	seconds, err := strconv.ParseFloat(os.Args[4], 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "seconds:", err)
		os.Exit(2)
	}
	resp2 := protocol == "resp2"
	const timeout = 500 * time.Millisecond

	var t target
	var version string
	switch lib {
	case "go-redis":
		proto := 3
		if resp2 {
			proto = 2
		}
		client := goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:    name,
			SentinelAddrs: []string{sentinel},
			Protocol:      proto,
			DialTimeout:   timeout,
			ReadTimeout:   timeout,
			WriteTimeout:  timeout,
		})
		t, version = goRedis{client}, moduleVersion(client)
	case "rueidis":
		client, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress:      []string{sentinel},
			Sentinel:         rueidis.SentinelOption{MasterSet: name},
			AlwaysRESP2:      resp2,
			ConnWriteTimeout: timeout,
			Dialer:           net.Dialer{Timeout: timeout},
		})
		if err != nil {
			emit(map[string]any{"event": "fatal", "detail": err.Error()})
			os.Exit(1)
		}
		t, version = rueidisTarget{client}, moduleVersion(rueidis.ClientOption{})
	case "valkey-go":
		client, err := valkey.NewClient(valkey.ClientOption{
			InitAddress:      []string{sentinel},
			Sentinel:         valkey.SentinelOption{MasterSet: name},
			AlwaysRESP2:      resp2,
			ConnWriteTimeout: timeout,
			Dialer:           net.Dialer{Timeout: timeout},
		})
		if err != nil {
			emit(map[string]any{"event": "fatal", "detail": err.Error()})
			os.Exit(1)
		}
		t, version = valkeyTarget{client}, moduleVersion(valkey.ClientOption{})
	default:
		fmt.Fprintln(os.Stderr, "unknown library", lib)
		os.Exit(2)
	}
	emit(map[string]any{"event": "started", "lib": lib, "version": version, "protocol": protocol})

	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	lastMaster, lastError := "", ""
	for i := 1; time.Now().Before(deadline); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
		master, err := t.writeAndLocate(ctx, fmt.Sprintf("coordinator-e2e:%s:%d", lib, i), strconv.Itoa(i))
		cancel()
		if err != nil {
			kind := fmt.Sprintf("%T", err)
			if kind != lastError {
				detail := err.Error()
				if len(detail) > 200 {
					detail = detail[:200]
				}
				emit(map[string]any{"event": "error", "error": kind, "detail": detail})
				lastError = kind
			}
			time.Sleep(50 * time.Millisecond)
		} else {
			lastError = ""
			if master != lastMaster {
				event := "write"
				if lastMaster == "" {
					event = "ready"
				}
				emit(map[string]any{"event": event, "master": master, "seq": i})
				lastMaster = master
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}
