// A Serf RPC client built from Debian's golang-github-hashicorp-serf-dev (Serf's own Go
// client, github.com/hashicorp/serf/client), driven by tests/serf_rpc.rs against our agent.
// Each step prints one line the test checks; any failure exits 1 with the error.
//
// Usage: serf_client ADDR [TOKEN]
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/serf/client"
)

func fail(step string, err error) {
	fmt.Printf("FAIL %s: %v\n", step, err)
	os.Exit(1)
}

func main() {
	conf := &client.Config{Addr: os.Args[1], Timeout: 10 * time.Second}
	if len(os.Args) > 2 {
		conf.AuthKey = os.Args[2]
	}
	c, err := client.ClientFromConfig(conf)
	if err != nil {
		fail("connect", err)
	}
	defer c.Close()

	members, err := c.Members()
	if err != nil {
		fail("members", err)
	}
	var names []string
	for _, m := range members {
		names = append(names, fmt.Sprintf("%s/%s/%s/%d/%s", m.Name, m.Addr, m.Status, m.Port, m.Tags["role"]))
	}
	sort.Strings(names)
	fmt.Printf("members %s\n", strings.Join(names, " "))

	filtered, err := c.MembersFiltered(map[string]string{"role": "app.*"}, "alive", "")
	if err != nil {
		fail("members-filtered", err)
	}
	fmt.Printf("filtered %d\n", len(filtered))

	// A stream of everything: a user event and a query come back through it, and the query
	// is answered with respond.
	events := make(chan map[string]interface{}, 64)
	stream, err := c.Stream("user,query", events)
	if err != nil {
		fail("stream", err)
	}
	if err := c.UserEvent("deploy", []byte("v2"), false); err != nil {
		fail("event", err)
	}
	acks := make(chan string, 16)
	resps := make(chan client.NodeResponse, 16)
	if err := c.Query(&client.QueryParam{
		Name: "whoami", Payload: []byte("?"), RequestAck: true,
		Timeout: 3 * time.Second, AckCh: acks, RespCh: resps,
		FilterNodes: []string{os.Getenv("SELF")},
	}); err != nil {
		fail("query", err)
	}
	deadline := time.After(8 * time.Second)
	gotUser, answered := false, false
	for !(gotUser && answered) {
		select {
		case e := <-events:
			switch e["Event"] {
			case "user":
				fmt.Printf("stream user %s %s\n", e["Name"], e["Payload"])
				gotUser = true
			case "query":
				var id uint64
				switch v := e["ID"].(type) {
				case uint64:
					id = v
				case int64:
					id = uint64(v)
				default:
					fail("stream query", fmt.Errorf("ID %T", v))
				}
				fmt.Printf("stream query %s %s\n", e["Name"], e["Payload"])
				if err := c.Respond(id, []byte("it is me")); err != nil {
					fail("respond", err)
				}
				if err := c.Respond(id+100, []byte("nobody")); err == nil {
					fail("respond to an unknown id", fmt.Errorf("no error"))
				} else {
					fmt.Printf("respond unknown: %v\n", err)
				}
				answered = true
			}
		case <-deadline:
			fail("stream", fmt.Errorf("user=%v query=%v after 8 s", gotUser, answered))
		}
	}
	for r := range resps {
		fmt.Printf("response %s %s\n", r.From, r.Payload)
	}
	if err := c.Stop(stream); err != nil {
		fail("stop", err)
	}

	logs := make(chan string, 1024)
	mon, err := c.Monitor("INFO", logs)
	if err != nil {
		fail("monitor", err)
	}
	select {
	case l := <-logs:
		fmt.Printf("monitor %s\n", l)
	case <-time.After(5 * time.Second):
		fail("monitor", fmt.Errorf("no line in 5 s"))
	}
	// Its own channel: the client closes each handler's channel when the connection ends.
	if _, err := c.Monitor("INFO", make(chan string, 1)); err != nil {
		fmt.Printf("second monitor: %v\n", err)
	}
	if err := c.Stop(mon); err != nil {
		fail("stop monitor", err)
	}

	coord, err := c.GetCoordinate(os.Getenv("SELF"))
	if err != nil {
		fail("get-coordinate", err)
	}
	// Coordinates differ by nature (and in dimensions: Serf's 8, our 4); what must hold is
	// that the agent has one for itself and that it is usable.
	if coord == nil || len(coord.Vec) == 0 || coord.Height <= 0 || coord.DistanceTo(coord) <= 0 {
		fmt.Printf("coordinate unusable %v\n", coord)
	} else {
		fmt.Println("coordinate usable")
	}

	stats, err := c.Stats()
	if err != nil {
		fail("stats", err)
	}
	fmt.Printf("stats name=%s members=%s\n", stats["agent"]["name"], stats["serf"]["members"])

	if err := c.UpdateTags(map[string]string{"zone": "eu"}, []string{"role"}); err != nil {
		fail("tags", err)
	}
	fmt.Println("done")
}
