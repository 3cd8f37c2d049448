"""Operations: the metrics catalogue, the counters written with the work, the readings taken at
scrape time, their text exposition, the health checks and the small HTTP server serving them."""
