package verify

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

type redisClient = redis.Client

func itoa(i int) string { return strconv.Itoa(i) }
