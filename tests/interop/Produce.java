// A producer on the standard Java client (kafka-clients, from the broker's
// own jars): reads "KEYHEX<TAB>VALUEHEX" lines from stdin and publishes them
// to a topic with a chosen compression.type, so sendgate's consumers meet
// batches compressed by the Java implementations of gzip, snappy, lz4 and
// zstd. Run with the source launcher:
//
//   java -cp "<kafka lib>/*" Produce.java BOOTSTRAP TOPIC CODEC [prop=value ...]
//
// Prints the number of records acknowledged.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Produce {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: Produce BOOTSTRAP TOPIC CODEC [prop=value ...]");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("compression.type", args[2]);
        props.put("acks", "all");
        // One batch for everything sent: the whole input is compressed together.
        props.put("linger.ms", "200");
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        for (int i = 3; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            props.put(kv[0], kv[1]);
        }
        HexFormat hex = HexFormat.of();
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props);
             BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) continue;
                String[] kv = line.split("\t", 2);
                sent.add(producer.send(new ProducerRecord<>(args[1], hex.parseHex(kv[0]), hex.parseHex(kv[1]))));
            }
            producer.flush();
            for (Future<RecordMetadata> f : sent) f.get();
        }
        System.out.println(sent.size());
    }
}
